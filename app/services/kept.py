"""What a server process keeps in memory: the most recently used values, within a budget, each
for at most a time to live."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """A thread-safe store of the most recently used values, within a total ``budget`` where
    ``weigh`` gives each value's weight (1 each by default); with ``ttl`` (seconds), a value is
    forgotten that long after it was put.
    """

    def __init__(
        self,
        budget: int,
        weigh: Callable[[V], int] = lambda _: 1,
        *,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget, self.weigh, self.ttl, self.clock = budget, weigh, ttl, clock
        self.used = 0
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            value, put_at = found
            if self.ttl is not None and self.clock() - put_at >= self.ttl:
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        weight = self.weigh(value)
        if weight > self.budget or self.ttl == 0:
            return
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (value, self.clock())
            self.used += weight
            while self.used > self.budget:
                self._drop(next(iter(self._items)))

    def drop_where(self, doomed: Callable[[K, V], bool]) -> None:
        """Forget every value for which ``doomed(key, value)`` holds."""
        with self._lock:
            for key in [k for k, (v, _) in self._items.items() if doomed(k, v)]:
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.used = 0

    def _drop(self, key: K) -> None:
        value, _ = self._items.pop(key)
        self.used -= self.weigh(value)

    def __len__(self) -> int:
        return len(self._items)
