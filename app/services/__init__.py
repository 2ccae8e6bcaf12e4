"""The data layer: plain functions over a SQLAlchemy session, shared by the API, the CLI and the
workers. Nothing here imports FastAPI; refusals are ``app.errors.ServiceError``s.

Functions that finish a unit of work commit it (and say so); the rest only flush.
"""
