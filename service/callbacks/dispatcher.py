"""The API process's callback deliverer: claims due callbacks (under a lease, shared by
every API process), delivers each, records the attempt and schedules the next one with
backoff, a bounded number of times. API pods deliver, not workers: workers have no
network egress at all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Final

import redis
import redis.asyncio

from sandboxes.schema import CallbackAttempt
from sandboxes.settings import Settings
from service.callbacks import bodies, deliver
from workers.callback_queue import CALLBACKS, CallbackQueue
from workers.store import job_key

POLL_S: Final = 0.2
CONCURRENCY: Final = 16  # deliveries at once per API process; the rest wait in Redis
log = logging.getLogger(__name__)


def next_state(attempt: CallbackAttempt, made: int, settings: Settings,
               now: float) -> tuple[str, float | None]:
    """(the callback's state, when to try again or None) after ``made`` attempts."""
    if attempt.outcome == "delivered":
        return "delivered", None
    if attempt.outcome == "refused":
        return "refused", None
    if made >= settings.callback_max_attempts:
        return "failed", None
    return "pending", now + settings.callback_backoff_s * 4 ** (made - 1)


class CallbackDispatcher:
    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.client, self.settings = client, settings
        self.queue = CallbackQueue(client)
        self._running: set[asyncio.Task[None]] = set()
        # A claim outlives an attempt (bounded by the timeout) with room to spare; only
        # what can start at once is claimed, so no claim waits for a slot.
        self.lease_s = 2 * settings.callback_timeout_s + 10

    async def run(self) -> None:
        """Forever: claim what is due while slots are free, deliver it concurrently.
        Redis down (or anything else) is logged once a second at most, and waited out."""
        while True:
            token = uuid.uuid4().hex
            try:
                free = CONCURRENCY - len(self._running)
                due = await self.queue.claim(time.time(), self.lease_s, free,
                                             token) if free > 0 else []
            except Exception as err:  # the deliverer must outlive any fault
                log.warning("callbacks: cannot claim (%s); retrying", err)
                await asyncio.sleep(1)
                continue
            for job_id in due:
                task = asyncio.create_task(self.deliver(job_id, token))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            if not due or len(self._running) >= CONCURRENCY:
                await asyncio.sleep(POLL_S)

    async def deliver(self, job_id: str, token: str) -> None:
        try:
            await self._deliver(job_id, token)
        except (redis.RedisError, OSError) as err:  # the lease brings it back
            log.warning("callbacks: job %s not recorded (%s); it will be retried", job_id, err)
        except Exception:
            log.exception("callbacks: delivering job %s failed", job_id)

    async def _deliver(self, job_id: str, token: str) -> None:
        key = job_key(job_id)
        fields: dict[bytes, bytes] = await self.client.hgetall(key)  # type: ignore[assignment]
        target = json.loads(fields[b"callback"]) if b"callback" in fields else None
        payload = None if target is None else await asyncio.to_thread(
            bodies.body, target.get("style", bodies.WARDEN), job_id, fields,
            self.settings.judge_fuel_per_second)
        if target is None or payload is None:  # the job is gone: nothing to send
            await self.client.zrem(CALLBACKS, job_id)
            return
        try:
            attempt = await deliver.attempt(
                target["url"], target["method"], payload, self.settings.callback_networks,
                self.settings.callback_timeout_s,
                headers={"Idempotency-Key": job_id, "Warden-Job-Id": job_id})
        except Exception as err:  # a bug: recorded as a failed attempt, so it ends
            log.exception("callbacks: attempt for job %s raised", job_id)
            attempt = CallbackAttempt(at=time.time(), outcome="failed",
                                      detail=f"internal error: {type(err).__name__}")
        made = len(json.loads(fields.get(b"callback_log") or b"[]")) + 1
        state, next_due = next_state(attempt, made, self.settings, time.time())
        await self.queue.record(job_id, key, attempt, state, next_due, token)

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(BaseException):
                await task
