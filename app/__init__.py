"""segaudit's REST service: projects, datasets, annotation sets, audits and their results.

Nothing here imports torch, MONAI or the worker's tasks: long work is enqueued by task name
(``app.queue``), and the workers call the data layer in ``app.services`` and ``app.db``.
"""
