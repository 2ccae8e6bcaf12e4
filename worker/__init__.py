"""The workers: Celery tasks that run audits with the engine and keep the database up to date.

- ``celery_app``: the Celery app, configured from the service's one settings object;
- ``tasks``: thin tasks (``segaudit.run_audit``) that call ``pipeline``;
- ``pipeline``: one audit attempt (claim, stage, train with progress/heartbeat/cancel, store),
  the function every task and the embedded mode share;
- ``comparisons``: one comparison of annotation sets (``segaudit.run_comparison``, on the
  ``cpu`` queue);
- ``reconcile``: the loop in every worker that requeues audits whose worker died and re-sends
  queued audits whose message the broker lost;
- ``cli``: ``segaudit worker``.

Importing any of these never imports torch: the engine is loaded when the first audit runs, so
no CUDA context exists before a pool forks.
"""
