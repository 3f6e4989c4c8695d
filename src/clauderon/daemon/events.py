"""Fan-out of session events to whoever listens (front ends, streams, tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..models import utcnow

QUEUE_SIZE = 256


class EventBus:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, event: dict[str, Any]) -> None:
        event = {"ts": utcnow().isoformat(), **event}
        for queue in list(self._queues):
            if queue.full():  # a listener that stopped reading loses its oldest event
                queue.get_nowait()
            queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._queues.discard(queue)
