# syntax=docker/dockerfile:1
# One image for the API, the workers, migrations and Flower (docker-compose.yml).
#   docker build -t segaudit .                                  # CPU torch (default)
#   docker build -t segaudit --build-arg TORCH_VARIANT=cu128 .  # CUDA torch, for worker-gpu
# TORCH_VARIANT names a PyTorch wheel index (cpu, cu126, cu128, ...); CUDA wheels bring their
# own CUDA libraries, so the host needs only the NVIDIA driver and container toolkit.
FROM python:3.11-slim-bookworm

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
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

# Dependencies first (a layer that survives code changes): torch from the chosen index, then
# the locked set without the benchmark's AGPL peer (cleanlab) and the dev tools, then Flower.
# `segaudit bench` runs in the image with every method but cleanlab (pip install cleanlab adds it).
COPY requirements.lock ./
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        "torch==${TORCH_VERSION}" \
    && grep -v -E '^(cleanlab|pytest|ruff|iniconfig|pluggy|mypy|mypy_extensions|librt|pathspec|ast_serialize)==' requirements.lock > /tmp/req.txt \
    && pip install -r /tmp/req.txt "flower>=2.0,<3" \
    && rm /tmp/req.txt

# The code, installed in place: `segaudit db upgrade` finds migrations/ beside app/ (a wheel
# ships it there too).
COPY pyproject.toml README.md alembic.ini ./
COPY imaging imaging
COPY models models
COPY bench bench
COPY app app
COPY worker worker
COPY cli cli
COPY migrations migrations
# Smoke test: the commands, and what the API and the workers import at start-up.
RUN pip install --no-deps -e . \
    && segaudit --version && segaudit --help > /dev/null && segaudit bench --help > /dev/null \
    && python -c "import app.main, worker.celery_app, app.docs_assets; app.docs_assets.assets_folder()"

USER segaudit
VOLUME ["/data"]
EXPOSE 8000
# The API by default; compose runs the workers, migrations and Flower from the same image and
# gives each its own check (or none).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=4 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
CMD ["segaudit", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
