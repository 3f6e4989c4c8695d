"""Blocking calls (Docker SDK, git) from the event loop, safe under cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call in a thread. If the caller is cancelled meanwhile, wait for the
    call to finish before re-raising, so rollback sees everything the call created."""
    future = asyncio.get_running_loop().run_in_executor(
        None, functools.partial(fn, *args, **kwargs)
    )
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise


async def iterate_in_thread(iterator: Iterator[T], backlog: int = 64) -> AsyncIterator[T]:
    """Items of a blocking iterator that may wait for ever (`logs -f`), read by a thread of
    its own: one in the shared pool would starve every other blocking call once a few
    clients follow. When the consumer stops, the iterator is closed (if it can be), which
    ends the thread's read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=backlog)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> None:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        with contextlib.suppress(Exception):
            future.result()  # waits while the consumer is behind: the reader slows down

    def read() -> None:
        try:
            for item in iterator:
                if stop.is_set():
                    return
                put((False, item))
        except Exception as exc:  # the stream broke: the consumer ends with it
            if not stop.is_set():
                put((True, exc))
                return
        if not stop.is_set():
            put((True, None))

    threading.Thread(target=read, name="iterate-in-thread", daemon=True).start()
    try:
        while True:
            done, value = await queue.get()
            if done:
                if isinstance(value, Exception):
                    raise value
                return
            yield value
    finally:
        stop.set()
        close = getattr(iterator, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(close)
