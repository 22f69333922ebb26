"""Idempotent submissions: the ``Idempotency-Key`` request header.

A client that lost the answer to a submission (a 503 after its job was queued, a connection
cut while the API died) retries with the same key and gets the same job back instead of a
second run. The key's record (the request's fingerprint and the ids it created) is written
in the very script step that queues the jobs (workers/queue.py), so a retry finds it exactly
when the first attempt's jobs exist; two concurrent requests with one key queue once.

* same key, same request (method, path, query but ``wait``, body bytes), within the
  window: the first request's ids; nothing new is queued or charged;
* same key, a different request: 422 ``idempotency-key-reused``;
* keys are per tenant; a key is 1-255 visible ASCII characters, else 400.

Every submitting route goes through ``enqueue_checked`` (service/routes/jobs.py): Warden's
jobs and batches, judge submissions, Judge0's submissions and batches, Piston's execute.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

from fastapi import Request

from service.http_errors import Problem
from workers.queue import AlreadySubmittedError, Idempotency

HEADER: Final = "Idempotency-Key"
_KEY: Final = re.compile(r"[\x21-\x7e]{1,255}")
_IGNORED_QUERY: Final = frozenset({"wait"})  # how long to wait is not what is submitted


async def idempotency_of(request: Request, tenant: str, ids: list[str],
                         window_s: int) -> Idempotency | None:
    """The record this request writes with its jobs, or None without the header."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise Problem(400, "invalid-idempotency-key", "The Idempotency-Key is not valid",
                      f"{HEADER} must be 1 to 255 visible ASCII characters")
    value = json.dumps({"fingerprint": await _fingerprint(request), "ids": ids})
    return Idempotency(_record_key(tenant, raw), value, window_s)


def _record_key(tenant: str, raw: str) -> str:
    return f"warden:idem:{tenant}:{hashlib.sha256(raw.encode()).hexdigest()}"


def forget(client: Any, request: Request, tenant: str) -> None:
    """Drop this request's key (a run the API itself cancelled, e.g. Piston's wait ran
    out): a retry with the same key then runs afresh instead of replaying the cancel."""
    raw = request.headers.get(HEADER)
    if raw is not None and _KEY.fullmatch(raw):
        client.delete(_record_key(tenant, raw))


async def replayed_ids(request: Request, err: AlreadySubmittedError) -> list[str]:
    """The ids the first request with this key created; 422 if it was another request."""
    previous = json.loads(err.previous)
    if previous["fingerprint"] != await _fingerprint(request):
        raise Problem(422, "idempotency-key-reused",
                      "The Idempotency-Key was used for another request",
                      f"this {HEADER} came with a different request (method, path, query or "
                      "body) within its window: send a new key for a new submission")
    ids: list[str] = previous["ids"]
    return ids


async def _fingerprint(request: Request) -> str:
    query = sorted((k, v) for k, v in request.query_params.multi_items()
                   if k not in _IGNORED_QUERY)
    digest = hashlib.sha256()
    digest.update(json.dumps([request.method, request.url.path, query]).encode())
    digest.update(await request.body())
    return digest.hexdigest()
