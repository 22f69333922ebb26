"""Callbacks due: a job that names a callback enters ``warden:callbacks`` (a sorted set by
due time) in the same Lua step that ends it, whichever ends it (a worker's finish, a
queued cancel, the reaper). Deliverers claim due entries under a lease, so that a
deliverer that dies leaves them to another, and record each attempt on the job's hash.

Job hash fields: ``callback`` (JSON: url, method, style), ``callback_state`` (pending,
delivered, failed, refused), ``callback_log`` (JSON list of attempts).
"""

from __future__ import annotations

import json
from typing import Any, Final

import redis.asyncio

from sandboxes.schema import CallbackAttempt, CallbackStatus
from workers.lua import script, unique

CALLBACKS: Final = "warden:callbacks"

# Lua, for the scripts that end a job: its callback is due now (they declare CALLBACKS).
CALLBACK_DUE: Final = """
local function callback_due(job, id, now)
  if redis.call('HEXISTS', job, 'callback') == 1 then
    redis.call('ZADD', key('warden:callbacks'), now, id)
  end
end
"""

# KEYS[1]=callbacks, then the job hash of each entry the caller saw due. ARGV: now, lease
# seconds, how many, claim token. Due entries are moved past the lease (the claim), and the
# token is written on the job: only the latest claimer may record (a claimer that outlived
# its lease is fenced off). An entry whose claimer died comes due again when its lease
# ends; one whose job is gone or no longer pending leaves. An entry due since the caller
# looked (its job not declared) is left to the next claim.
_CLAIM = script("claim_callbacks", """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local claimed = {}
for _, id in ipairs(due) do
  local job = 'warden:job:' .. id
  if declared(job) then
    if redis.call('HGET', key(job), 'callback_state') == 'pending' then
      redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
      redis.call('HSET', key(job), 'callback_claim', ARGV[4])
      table.insert(claimed, id)
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return claimed
""")

# KEYS[1]=callbacks KEYS[2]=job ARGV: id, attempt JSON, state, next due ('' = done), claim
# token. The attempt is appended to the job's log (-1: another claim holds it now).
_RECORD = script("record_callback", """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
if redis.call('HGET', KEYS[2], 'callback_claim') ~= ARGV[5] then return -1 end
local log = redis.call('HGET', KEYS[2], 'callback_log')
local attempts = log and cjson.decode(log) or {}
table.insert(attempts, cjson.decode(ARGV[2]))
redis.call('HSET', KEYS[2], 'callback_log', cjson.encode(attempts), 'callback_state', ARGV[3])
redis.call('HDEL', KEYS[2], 'callback_claim')
if ARGV[4] == '' then redis.call('ZREM', KEYS[1], ARGV[1])
else redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1]) end
return #attempts
""")


def callback_fields(url: str, method: str, style: str) -> dict[str, str]:
    """The job hash fields that make a job's end deliver a callback."""
    return {"callback": json.dumps({"url": url, "method": method, "style": style}),
            "callback_state": "pending"}


def callback_status(fields: dict[bytes, bytes]) -> CallbackStatus | None:
    raw = fields.get(b"callback")
    if not raw:
        return None
    attempts = json.loads(fields.get(b"callback_log") or b"[]")
    return CallbackStatus(url=json.loads(raw)["url"],
                          state=(fields.get(b"callback_state") or b"pending").decode(),
                          attempts=[CallbackAttempt.model_validate(a) for a in attempts])


class CallbackQueue:
    """Claiming and recording callbacks (asyncio: the API's deliverer uses it)."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._claim = client.register_script(_CLAIM)
        self._record = client.register_script(_RECORD)

    async def claim(self, now: float, lease_s: float, count: int, token: str) -> list[str]:
        """Up to ``count`` due callbacks, claimed for ``lease_s``. The due entries are read
        first: the script must be told their jobs' keys."""
        from workers.store import job_key  # workers.store imports this module

        seen = await self._client.zrangebyscore(CALLBACKS, "-inf", now, start=0, num=count)
        if not seen:
            return []
        ids = [m.decode() if isinstance(m, bytes) else str(m) for m in seen]
        due: list[bytes] = await self._claim(keys=[CALLBACKS, *unique(map(job_key, ids))],
                                             args=[now, lease_s, count, token])
        return [member.decode() for member in due]

    async def record(self, job_id: str, job_key: str, attempt: CallbackAttempt, state: str,
                     next_due: float | None, token: str) -> int:
        """The attempts made so far (0: the job is gone; -1: the claim was lost)."""
        entry: dict[str, Any] = attempt.model_dump(mode="json")
        count: int = await self._record(
            keys=[CALLBACKS, job_key],
            args=[job_id, json.dumps(entry), state, "" if next_due is None else repr(next_due),
                  token])
        return count
