"""One thread doing blocking work handed over by the event loop, in the order it was
handed over (the audit log's writes, the store's writes of agent reports).

The loop never waits: `submit` puts the work on a bounded queue and returns. When the
queue is full (the disk or the store stalls for long), the work is dropped and counted,
and `on_drop` is told when the worker catches up; nothing blocks the loop, and memory
stays bounded. `close` lets the queue drain (a normal stop loses nothing), then ends the
thread.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_STOP = object()


class SerialWorker:
    def __init__(
        self,
        name: str,
        backlog: int = 10_000,
        on_drop: Callable[[int], None] | None = None,
    ):
        self.name = name
        self.on_drop = on_drop
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=backlog)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._dropped = 0  # since the last report (the counter is the worker's to reset)
        self._dropped_lock = threading.Lock()
        self.dropped_total = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue `fn(*args)`; False (and counted) if the queue is full or closed."""
        if self._closed:
            return False
        self._ensure_thread()
        try:
            self._queue.put_nowait((fn, args))
        except queue.Full:
            with self._dropped_lock:
                self._dropped += 1
                self.dropped_total += 1
                first = self._dropped == 1
            if first:
                log.warning("%s: falling behind; work dropped until it catches up", self.name)
            return False
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is done (from any thread but the worker's);
        False on timeout."""
        if self._thread is None or threading.current_thread() is self._thread:
            return True
        done = threading.Event()
        try:
            self._queue.put((done.set, ()), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Do what is queued, then stop the thread (idempotent)."""
        self._closed = True
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        thread.join(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                thread.start()
                self._thread = thread
                # A daemon thread dies with the interpreter: drain it first on exit.
                atexit.register(self.close)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:
                log.exception("%s: a queued call failed", self.name)
            self._report_drops()

    def _report_drops(self) -> None:
        if not self._dropped or self._queue.full():
            return
        with self._dropped_lock:
            dropped, self._dropped = self._dropped, 0
        log.warning("%s: %d dropped while it was behind", self.name, dropped)
        if self.on_drop is not None:
            with contextlib.suppress(Exception):
                self.on_drop(dropped)
