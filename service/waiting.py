"""Waiting for something a worker ends (a job, a judge submission) without polling: a
waiter on the events channel, registered before each read so that an end is never missed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from service.http_errors import Problem
from service.state import AppState

T = TypeVar("T")


async def wait_until_ended(
    state: AppState, key: str, wait_s: float, read: Callable[[], Awaitable[T | None]],
    ended: Callable[[T], bool], not_found: Callable[[], Problem],
    fut: asyncio.Future[None] | None = None,
) -> T:
    """What ``read`` gives once ``ended`` says so or ``wait_s`` (at most WARDEN_MAX_WAIT_S)
    has passed. A wake-up that is not the end (the waiter wakes everyone after
    re-subscribing to Redis) waits again. ``fut``: a waiter registered before the work was
    queued, so its end cannot be missed and the first read can wait for it (one Redis read
    per submit-and-wait, not two)."""
    wait_s = min(wait_s, state.settings.max_wait_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    read_first = fut is None
    while True:
        if fut is None and wait_s > 0:
            fut = state.waiter.register(key)
        try:
            remaining = deadline - loop.time()
            if read_first or fut is None:
                found = await read()
                if found is None:
                    raise not_found()
                remaining = deadline - loop.time()
                if fut is None or ended(found) or remaining <= 0:
                    return found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, remaining)
        finally:
            if fut is not None:
                state.waiter.discard(key, fut)
                fut = None
        read_first = True
