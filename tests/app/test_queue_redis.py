"""What reaches a real Redis broker when an audit is submitted."""

from __future__ import annotations

import base64
import json

import redis

from app.queue import RUN_AUDIT
from tests.app.conftest import load_dataset, submit


def test_the_task_reaches_redis(api_factory, hc18, redis_url):
    api = api_factory(broker_url=redis_url)
    queue = api.settings.audit_queue
    client = redis.Redis.from_url(redis_url)
    try:
        audit = submit(api, load_dataset(api, *hc18))
        raw = client.lrange(queue, 0, -1)
        assert len(raw) == 1
        message = json.loads(raw[0])
        assert message["headers"]["task"] == RUN_AUDIT
        assert message["headers"]["id"] == audit["task_id"]
        assert message["properties"]["delivery_info"]["routing_key"] == queue
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        assert args == [audit["id"]] and kwargs == {}
    finally:
        client.delete(queue, *client.keys(f"_kombu.binding*{queue}*"))
