# syntax=docker/dockerfile:1
# Two images from one file (docker-compose.yml builds both):
#   docker build --target api -t segaudit-api .                 # the API, migrations, Flower: no torch
#   docker build -t segaudit .                                  # the workers: + CPU torch (default)
#   docker build -t segaudit --build-arg TORCH_VARIANT=cu128 .  # CUDA torch, for worker-gpu
# TORCH_VARIANT names a PyTorch wheel index (cpu, cu126, cu128, ...); CUDA wheels bring their
# own CUDA libraries, so the host needs only the NVIDIA driver and container toolkit.
# Each image installs only what its part needs (pyproject's base set, or + the `engine` extra),
# each package at its requirements.lock version: no dev tools, no benchmark peers.

# The code, once, for both images.
FROM scratch AS source
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY imaging imaging
COPY models models
COPY bench bench
COPY app app
COPY worker worker
COPY cli cli
COPY migrations migrations

FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SEGAUDIT_DATA_DIR=/data \
    TMPDIR=/data/tmp
# Uploads are spooled to TMPDIR while they arrive: on the data volume, not the container's /tmp.
RUN useradd --create-home --uid 10001 segaudit \
    && mkdir -p /data/tmp /data/storage && chown -R segaudit:segaudit /data
WORKDIR /app
COPY requirements.lock pyproject.toml ./
COPY scripts/image_requirements.py scripts/
VOLUME ["/data"]
EXPOSE 8000
# The API's check; compose gives the workers their own (a Celery ping).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=4 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
# Several server processes on the one port (docs/benchmarks.md: about one per CPU core).
CMD ["segaudit", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]

# The API, `segaudit db|keys|submit|storage` and Flower: no torch, MONAI or scikit-learn.
FROM base AS api
RUN python scripts/image_requirements.py > /tmp/req.txt \
    && echo "flower>=2.0,<3" >> /tmp/req.txt \
    && pip install -c requirements.lock -r /tmp/req.txt && rm /tmp/req.txt
COPY --from=source /app ./
# Smoke test: the commands, what the API imports at start-up, and no engine in this image.
RUN pip install --no-deps -e . \
    && segaudit --version && segaudit --help > /dev/null \
    && python -c "import app.main, app.docs_assets; app.docs_assets.assets_folder()" \
    && ! python -c "import torch" 2> /dev/null
USER segaudit

# The workers (and every command): torch from the chosen index first, then the engine extra.
# `segaudit bench` runs here with every method but cleanlab (AGPL; pip install cleanlab adds it).
FROM base AS engine
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        "torch==${TORCH_VERSION}" \
    && python scripts/image_requirements.py engine > /tmp/req.txt \
    && pip install -c requirements.lock -r /tmp/req.txt && rm /tmp/req.txt
COPY --from=source /app ./
# Smoke test: the commands, and what the API and the workers import at start-up.
RUN pip install --no-deps -e . \
    && segaudit --version && segaudit --help > /dev/null && segaudit bench --help > /dev/null \
    && python -c "import app.main, worker.celery_app, app.docs_assets; app.docs_assets.assets_folder()"
USER segaudit
