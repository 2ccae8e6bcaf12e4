"""The heartbeat thread beside a running audit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from worker.transient import TRANSIENT

log = logging.getLogger("worker.pipeline")


class Watch(threading.Thread):
    """Refreshes the heartbeat from its own session while the engine runs, so that a long phase
    between reports is never taken for a dead worker; notices a cancel or a takeover; ends the
    process at the hard time limit (a stuck step cannot be interrupted from inside).
    """

    def __init__(
        self,
        beat: Callable[[], bool],
        *,
        interval: float,
        hard_limit_s: float,
        on_hard_limit: Callable[[], None],
    ) -> None:
        super().__init__(name="segaudit-heartbeat", daemon=True)
        self.beat = beat
        self.interval = interval
        self.deadline = time.monotonic() + hard_limit_s
        self.on_hard_limit = on_hard_limit
        self.lost = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(min(self.interval, max(self.deadline - time.monotonic(), 0))):
            if time.monotonic() >= self.deadline:
                self.on_hard_limit()
                return
            try:
                alive = self.beat()
            except TRANSIENT as exc:  # the next beat may get through; the run goes on
                log.warning("heartbeat failed: %s", exc)
                continue
            if not alive:
                self.lost.set()
                return

    def stop(self) -> None:
        self._done.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
