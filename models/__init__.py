"""segaudit's algorithm: deep self-cleansing label audit, pure torch/numpy/scikit-learn/MONAI.

Nothing here imports a service (FastAPI, Celery, SQLAlchemy); the service, the workers and the
command line all call ``models.audit.run_audit``.
"""

__version__ = "0.1.0"
