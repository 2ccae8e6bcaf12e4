"""segaudit's algorithm: deep self-cleansing label audit, pure torch/numpy/scikit-learn/MONAI.

Nothing here imports a service (FastAPI, Celery, SQLAlchemy); the service, the workers and the
command line all call ``models.audit.run_audit``.
"""

from imaging import __version__  # pyproject.toml's, set in one place

__all__ = ["__version__"]
