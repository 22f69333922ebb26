"""Judge problems, their test data and submissions in Redis (durable: no TTL on problems).

Keys (prefix ``warden:``): ``problem:{tenant}:{id}`` hash (version, created_at, updated_at);
``problem:{tenant}:{id}:v{n}`` the Problem JSON of each version (kept while the problem
exists: a submission is graded against the version it named); ``problems:{tenant}`` zset of
ids by creation; ``blob:{sha256}`` test data, stored once whoever uploads it;
``blobs:{tenant}`` hash sha256 → size of the blobs the tenant owns (a tenant may refer only
to its own: a hash is not a capability); ``problem-bytes:{tenant}`` their total, counted
against the tenant's ``stored_bytes`` quota; ``blob-refs`` hash sha256 → tenants owning it.
``sub:{id}`` hash (tenant, problem, version, state, counts, grade) and ``sub:{id}:tests``
hash test name → TestResult JSON, both expiring like job records;
``subs:{tenant}:{problem}`` zset of submission ids by creation.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Final

import redis

from judge.grading import Grade
from judge.problem import GroupResult, Problem, ProblemRecord, SubmissionRecord, TestResult
from judge.verdicts import Verdict
from sandboxes.schema import JobState
from tenancy.limits import problem_bytes_key
from workers.lua import script
from workers.store import EVENTS, PREFIX, job_key

MAX_LISTED_SUBMISSIONS: Final = 10_000
PUT_PROBLEM_TRIES: Final = 5
BLOB_REFS: Final = f"{PREFIX}blob-refs"


def problem_key(tenant: str, problem_id: str) -> str:
    return f"{PREFIX}problem:{tenant}:{problem_id}"


def version_key(tenant: str, problem_id: str, version: int) -> str:
    return f"{problem_key(tenant, problem_id)}:v{version}"


def blob_key(sha256: str) -> str:
    return f"{PREFIX}blob:{sha256}"


def tenant_blobs_key(tenant: str) -> str:
    """Hash sha256 → size of the blobs the tenant owns."""
    return f"{PREFIX}blobs:{tenant}"


def submission_key(submission_id: str) -> str:
    return f"{PREFIX}sub:{submission_id}"


def tests_key(submission_id: str) -> str:
    return f"{submission_key(submission_id)}:tests"


def test_jobs_key(submission_id: str) -> str:
    """Test name → the id of the job that runs it."""
    return f"{submission_key(submission_id)}:jobs"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class StorageQuotaError(Exception):
    def __init__(self, limit: int, used: int, asked: int) -> None:
        super().__init__(f"stored bytes: {used} used + {asked} asked > {limit}")
        self.limit, self.used, self.asked = limit, used, asked


class ProblemContentionError(Exception):
    """Other writers kept adding versions between our read of the current one and the
    write (which must name the new version's key in advance)."""


# KEYS: the tenant's blobs, its problem bytes, blob refs, then each blob named in ARGV.
# ARGV: tenant, quota, then (sha, size, given, data) quads (given 0: already stored). Blobs
# the tenant does not own yet are charged to it; all or nothing.
_PUT_BLOBS = script("put_blobs", """
local tenant, quota = ARGV[1], tonumber(ARGV[2])
local owned = key('warden:blobs:' .. tenant)
local bytes_key = key('warden:problem-bytes:' .. tenant)
local refs = key('warden:blob-refs')
for i = 3, #ARGV, 4 do key('warden:blob:' .. ARGV[i]) end  -- all checked before any write
local used, new = tonumber(redis.call('GET', bytes_key) or '0'), 0
for i = 3, #ARGV, 4 do
  if redis.call('HEXISTS', owned, ARGV[i]) == 0 then new = new + tonumber(ARGV[i + 1]) end
end
if used + new > quota then return {0, used, new} end
for i = 3, #ARGV, 4 do
  if ARGV[i + 2] == '0' and redis.call('EXISTS', key('warden:blob:' .. ARGV[i])) == 0 then
    return {-1, ARGV[i]}
  end
end
for i = 3, #ARGV, 4 do
  local sha, size = ARGV[i], ARGV[i + 1]
  local blob = key('warden:blob:' .. sha)
  if ARGV[i + 2] == '1' and redis.call('EXISTS', blob) == 0 then
    redis.call('SET', blob, ARGV[i + 3])
  end
  if redis.call('HSETNX', owned, sha, size) == 1 then
    redis.call('HINCRBY', refs, sha, 1)
    redis.call('INCRBY', bytes_key, size)
  end
end
return {1, used + new, new}
""")

# KEYS: the tenant's blobs, its problem bytes, blob refs, then each blob named in ARGV.
# ARGV: tenant, then shas the tenant no longer refers to. A blob no tenant owns is deleted.
_RELEASE_BLOBS = script("release_blobs", """
local tenant = ARGV[1]
local owned = key('warden:blobs:' .. tenant)
local bytes_key = key('warden:problem-bytes:' .. tenant)
local refs = key('warden:blob-refs')
for i = 2, #ARGV do key('warden:blob:' .. ARGV[i]) end  -- all checked before any write
for i = 2, #ARGV do
  local size = redis.call('HGET', owned, ARGV[i])
  if size then
    redis.call('HDEL', owned, ARGV[i])
    redis.call('DECRBY', bytes_key, size)
    if redis.call('HINCRBY', refs, ARGV[i], -1) <= 0 then
      redis.call('HDEL', refs, ARGV[i])
      redis.call('DEL', key('warden:blob:' .. ARGV[i]))
    end
  end
end
return 1
""")

# KEYS: problem hash, listing, the new version's key (read ahead: current + 1). ARGV: id,
# now, problem JSON, expected version ("" = any; "0" = must not exist). {1, the new
# version's number}; {0, current} when not expected; {-1, current} when another writer
# added a version since the caller read it (the new key is not the one declared: retry).
_PUT_PROBLEM = script("put_problem", """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= current then return {0, current} end
local version = current + 1
local version_key = KEYS[1] .. ':v' .. version
if not declared(version_key) then return {-1, current} end
redis.call('SET', key(version_key), ARGV[3])
if current == 0 then
  redis.call('HSET', KEYS[1], 'created_at', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('HSET', KEYS[1], 'version', version, 'updated_at', ARGV[2])
return {1, version}
""")

# KEYS: sub hash, tests hash, events. ARGV: test name, TestResult JSON, ttl. A test's first
# result counts once (a re-run after its worker died overwrites, not adds); the reply is
# {done, total}.
_RECORD_TEST = script("record_test", """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local added = redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
if added == 1 then done = redis.call('HINCRBY', KEYS[1], 'done', 1) end
return {done, tonumber(redis.call('HGET', KEYS[1], 'total') or '0')}
""")


class ProblemStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.r = client
        self.ttl_s = ttl_s
        self._put_blobs = client.register_script(_PUT_BLOBS)
        self._release = client.register_script(_RELEASE_BLOBS)
        self._put_problem = client.register_script(_PUT_PROBLEM)
        self._record_test = client.register_script(_RECORD_TEST)

    # -- blobs ---------------------------------------------------------------------------
    def owned_blobs(self, tenant: str, shas: set[str]) -> set[str]:
        """Which of ``shas`` the tenant already owns."""
        if not shas:
            return set()
        ordered = sorted(shas)
        flags = self.r.hmget(tenant_blobs_key(tenant), ordered)
        return {sha for sha, size in zip(ordered, flags, strict=True) if size is not None}

    def put_blobs(self, tenant: str, quota: int, blobs: dict[str, bytes],
                  owned: set[str]) -> int:
        """Store ``blobs`` (sha → bytes) and take ownership of ``owned`` (already stored
        shas); StorageQuotaError past the quota. The bytes newly charged."""
        args: list[Any] = [tenant, quota]
        for sha, data in blobs.items():
            args += [sha, len(data), 1, data]
        taken = sorted(owned - set(blobs))
        for sha in taken:
            args += [sha, 0, 0, ""]
        if len(args) == 2:
            return 0
        reply = self._put_blobs(keys=_blob_keys(tenant, [*blobs, *taken]), args=args)
        if int(reply[0]) == 0:
            raise StorageQuotaError(quota, int(reply[1]), int(reply[2]))
        if int(reply[0]) == -1:
            raise KeyError(reply[1].decode())
        return int(reply[2])

    def problem_bytes(self, tenant: str) -> int:
        return int(self.r.get(problem_bytes_key(tenant)) or 0)

    def blob(self, sha256: str) -> bytes | None:
        data = self.r.get(blob_key(sha256))
        return data if isinstance(data, bytes) else None

    # -- problems ------------------------------------------------------------------------
    def put_problem(self, tenant: str, problem_id: str, problem: Problem,
                    expect_version: int | None) -> int | None:
        """A new version (1 for a new problem); None when ``expect_version`` (0: must not
        exist yet) does not match. The script must be told the new version's key, so the
        current version is read first, and read again if another writer got in between."""
        key, listing = problem_key(tenant, problem_id), f"{PREFIX}problems:{tenant}"
        data = problem.model_dump_json()
        expected = "" if expect_version is None else expect_version
        for _ in range(PUT_PROBLEM_TRIES):
            current = int(self.r.hget(key, "version") or 0)
            reply = self._put_problem(
                keys=[key, listing, version_key(tenant, problem_id, current + 1)],
                args=[problem_id, repr(time.time()), data, expected])
            if int(reply[0]) != -1:
                return int(reply[1]) if int(reply[0]) == 1 else None
        raise ProblemContentionError(
            f"problem {problem_id!r}: other writers added a version during each of "
            f"{PUT_PROBLEM_TRIES} tries")

    def record(self, tenant: str, problem_id: str,
               version: int | None = None) -> ProblemRecord | None:
        fields = self.r.hgetall(problem_key(tenant, problem_id))
        if not fields:
            return None
        version = int(fields[b"version"]) if version is None else version
        raw = self.r.get(version_key(tenant, problem_id, version))
        if not isinstance(raw, bytes):
            return None
        return ProblemRecord(id=problem_id, version=version,
                             created_at=float(fields[b"created_at"]),
                             updated_at=float(fields[b"updated_at"]),
                             problem=Problem.model_validate_json(raw))

    def problem(self, tenant: str, problem_id: str, version: int) -> Problem | None:
        raw = self.r.get(version_key(tenant, problem_id, version))
        return Problem.model_validate_json(raw) if isinstance(raw, bytes) else None

    def list_problems(self, tenant: str, limit: int = 1000) -> list[str]:
        ids = self.r.zrange(f"{PREFIX}problems:{tenant}", 0, limit - 1)
        return [_text(i) for i in ids]

    def delete_problem(self, tenant: str, problem_id: str) -> bool:
        """Every version goes; blobs no other problem of the tenant uses are released."""
        key = problem_key(tenant, problem_id)
        current = self.r.hget(key, "version")
        if current is None:
            return False
        dropped: set[str] = set()
        for v in range(1, int(current) + 1):
            p = self.problem(tenant, problem_id, v)
            if p is not None:
                dropped |= p.blobs()
        kept: set[str] = set()
        for other in self.list_problems(tenant, 100_000):
            if other == problem_id:
                continue
            record = self.record(tenant, other)
            for v in range(1, (record.version if record else 0) + 1):
                p = self.problem(tenant, other, v)
                if p is not None:
                    kept |= p.blobs()
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(key, *[version_key(tenant, problem_id, v)
                           for v in range(1, int(current) + 1)])
        pipe.zrem(f"{PREFIX}problems:{tenant}", problem_id)
        pipe.execute()
        released = sorted(dropped - kept)
        if released:
            self._release(keys=_blob_keys(tenant, released), args=[tenant, *released])
        return True

    # -- submissions ---------------------------------------------------------------------
    def submission_commands(self, submission_id: str, tenant: str, problem_id: str,
                            version: int, language: str | None, total: int,
                            compile_job: str) -> list[tuple[Any, ...]]:
        """The writes that create a submission (run with its compile job's enqueue)."""
        key, now = submission_key(submission_id), time.time()
        listing = f"{PREFIX}subs:{tenant}:{problem_id}"
        return [
            ("HSET", key, "tenant", tenant, "problem_id", problem_id, "version", version,
             "language", language or "", "state", JobState.QUEUED.value,
             "created_at", repr(now), "done", 0, "total", total, "compile_job", compile_job),
            ("EXPIRE", key, self.ttl_s),
            ("ZADD", listing, repr(now), submission_id),
            ("ZREMRANGEBYRANK", listing, 0, -MAX_LISTED_SUBMISSIONS - 1),
        ]

    def list_submissions(self, tenant: str, problem_id: str, limit: int) -> list[str]:
        """The problem's most recent submission ids, newest first."""
        ids = self.r.zrevrange(f"{PREFIX}subs:{tenant}:{problem_id}", 0, limit - 1)
        return [_text(i) for i in ids]

    def submission_fields(self, submission_id: str) -> dict[str, str]:
        raw = self.r.hgetall(submission_key(submission_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    def known_verdicts(self, submission_id: str) -> dict[str, Verdict]:
        raw = self.r.hgetall(tests_key(submission_id))
        return {_text(k): Verdict(json.loads(v)["verdict"]) for k, v in raw.items()}

    def test_results(self, submission_id: str) -> dict[str, TestResult]:
        raw = self.r.hgetall(tests_key(submission_id))
        return {_text(k): TestResult.model_validate_json(v) for k, v in raw.items()}

    def set_running(self, submission_id: str, compile_output: str | None) -> None:
        self.r.hset(submission_key(submission_id), mapping={
            "state": JobState.RUNNING.value, "compile_output": compile_output or ""})

    def record_test(self, submission_id: str, result: TestResult) -> tuple[int, int]:
        """(tests done, total) after recording ``result``; (-1, 0) for a submission gone."""
        reply = self._record_test(
            keys=[submission_key(submission_id), tests_key(submission_id), EVENTS],
            args=[result.name, result.model_dump_json(), self.ttl_s])
        return int(reply[0]), int(reply[1])

    def compile_lost(self, fields: dict[str, str]) -> str | None:
        """Why a queued submission's compile job ended without judging (its workers kept
        dying), or None while it may still run."""
        job = fields.get("compile_job")
        if not job:
            return None
        state, error = self.r.hmget(job_key(job), "state", "error")
        if state in (b"failed", b"cancelled") or state is None:
            return _text(error) if error else "its compile job ended without a result"
        return None

    def lost_tests(self, submission_id: str, recorded: set[str]) -> list[TestResult]:
        """Tests (not among ``recorded``) whose job ended without recording a result (its
        worker died more times than a job is retried): IE results for them, so the
        submission still ends."""
        jobs = {_text(k): _text(v) for k, v in
                self.r.hgetall(test_jobs_key(submission_id)).items()}
        pending = sorted(name for name in jobs if name not in recorded)
        if not pending:
            return []
        pipe = self.r.pipeline(transaction=False)
        for name in pending:
            pipe.hmget(job_key(jobs[name]), "state", "error")
        lost = []
        for name, (state, error) in zip(pending, pipe.execute(), strict=True):
            if state in (b"failed", b"cancelled") or state is None:
                why = _text(error) if error else "its job ended without a result"
                lost.append(TestResult(name=name, verdict=Verdict.IE, message=why))
        return lost

    def finish(self, submission_id: str, grade: Grade, state: JobState = JobState.FINISHED,
               error: str | None = None) -> None:
        """The final grade, once; waiters hear of it on the events channel."""
        summary = {
            "verdict": grade.verdict.value, "score": grade.score,
            "first_failure": grade.first_failure,
            "groups": [g.model_dump(mode="json") for g in grade.groups],
            "tests": [t.model_dump(mode="json") for t in grade.tests],
        }
        mapping: dict[Any, Any] = {"state": state.value, "finished_at": repr(time.time()),
                                   "grade": json.dumps(summary)}
        if grade.message is not None:
            mapping["compile_output"] = grade.message
        if error is not None:
            mapping["error"] = error
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(submission_key(submission_id), mapping=mapping)
        pipe.publish(EVENTS, submission_id)
        pipe.execute()


def _blob_keys(tenant: str, shas: list[str]) -> list[str]:
    """KEYS of the blob scripts: the tenant's blob records, then each blob of ``shas``."""
    return [tenant_blobs_key(tenant), problem_bytes_key(tenant), BLOB_REFS,
            *[blob_key(sha) for sha in shas]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def submission_view(submission_id: str, fields: dict[str, str],
                    tests: list[TestResult]) -> SubmissionRecord:
    """A submission as the API shows it: ``tests`` are the graded list once judged, the
    results so far while it runs."""
    grade = json.loads(fields["grade"]) if fields.get("grade") else None
    return SubmissionRecord(
        id=submission_id, problem_id=fields["problem_id"],
        problem_version=int(fields["version"]), language=fields.get("language") or None,
        state=JobState(fields["state"]), created_at=float(fields["created_at"]),
        finished_at=float(fields["finished_at"]) if fields.get("finished_at") else None,
        verdict=Verdict(grade["verdict"]) if grade else None,
        score=grade["score"] if grade else None,
        first_failure=grade["first_failure"] if grade else None,
        compile_output=fields.get("compile_output") or None,
        tests=[TestResult.model_validate(t) for t in grade["tests"]] if grade else tests,
        groups=[GroupResult.model_validate(g) for g in grade["groups"]] if grade else [],
        error=fields.get("error") or None,
    )
