"""``warden worker``: one RQ worker process that runs several jobs at once, in-process.

RQ's forking worker pays a fork per job (8.4 ms measured) for crash isolation; wasmtime
traps never crash the process, so Warden isolates at the process level instead: each worker
is its own process under the supervisor (``warden up`` or Kubernetes), and a worker that
dies has its job re-run or failed by another worker's reaper when the lease expires.

RQ's stock ``SimpleWorker`` still cost ~16 Redis round trips and ~3.5 ms of CPU per job
(three worker heartbeats, two state changes, job fetch and restore, execution records, a
WATCH/MULTI for dependents, registry clean-up reads, job delete). Warden's own lease
(renewed while the job runs, reaped when it stops) replaces RQ's per-job heartbeats, so
:class:`WardenWorker` keeps RQ's data consistent in three round trips per job (two while the
queue is not empty: the finishing MULTI of one job takes the next):

1. the TAKE script (workers/scheduling.py): the next job in fair order across tenants,
   moved from its tenant's RQ queue to that queue's intermediate list as RQ's ``BLMOVE``
   does, with a running slot for its tenant; an idle lane blocks on a doorbell list;
2. one MULTI: Warden's START script + the spec and cancel flag; RQ's execution record,
   started-registry entry and job status (written by RQ's own methods); ``LREM`` from the
   intermediate queue;
3. one MULTI: Warden's FINISH script (result, event); the RQ execution removed from its
   registries and the RQ job hash deleted (``result_ttl=0``); the worker's counters.

The worker registers, heartbeats (every few seconds, not per job), honours ``rq suspend``,
answers RQ's pub/sub commands and runs RQ's registry maintenance like a stock worker.
``LANES`` threads take and run jobs independently: wasmtime releases the GIL while a guest
runs, a lane's Redis round trips overlap another's work, and a long job holds one lane, not
the worker. Jobs stay ordinary RQ jobs (``workers.tasks.execute(job_id)``): a stock
``rq worker`` can still run them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.results import Result
from rq.suspension import is_suspended
from rq.worker import WorkerStatus

from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.stacks import start_guest_thread
from sandboxes.schema import LIMIT_BOUNDS, JobSpec, JobState, RunResult, RunStatus
from workers.accounting import account_args
from workers.judging import JUDGE_FIELD, judge_worker
from workers.pools import pool_key
from workers.queue import BACKSTOP_MARGIN_S, is_stale, taken_reply, warden_id
from workers.runtime import WorkerRuntime, runtime
from workers.scheduling import TAKEN, taken_member
from workers.store import JobContext, job_key
from workers.tasks import run_spec

log = logging.getLogger(__name__)

_HOUSEKEEPING_S: Final = 1.0
# What a worker reads of a job's record as it starts it (in the START round trip).
_RECORD_FIELDS: Final = ("spec", "cancel_requested", "created_at", JUDGE_FIELD, "tenant",
                         "fuel_day")
_HEARTBEAT_S: Final = 10.0
_LANE_BLOCK_S: Final = 1  # doorbell wait: bounds how long a stop waits for an idle lane
# RQ's execution TTL and started-registry score: the longest a job can run (the sandbox
# enforces wall time; RQ's timeout is the backstop) plus RQ's own 60 s heartbeat margin.
_EXECUTION_TTL_S: Final = int(LIMIT_BOUNDS["wall_time_s"].maximum) + BACKSTOP_MARGIN_S + 60


class WardenWorker(SimpleWorker):
    def __init__(self, rt: WorkerRuntime, lanes: int = 1) -> None:
        super().__init__([rt.queue.rq], connection=rt.client, default_result_ttl=0)
        self.rt = rt
        self.lanes = lanes
        self._lanes_stop = threading.Event()
        self._paused = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Lock()

    # -- the main thread: signals, heartbeats, suspension, maintenance -----------------------
    def work(self, burst: bool = False, logging_level: str | None = "WARNING",
             *args: Any, **kwargs: Any) -> bool:
        self.bootstrap(logging_level)
        self._install_signal_handlers()  # type: ignore[no-untyped-call]
        self.rt.store.load_scripts()
        self.rt.queue.load_scripts()
        self.set_state(WorkerStatus.IDLE)
        threads = [start_guest_thread(lambda: self._lane(burst), f"warden-lane-{i}")
                   for i in range(self.lanes)]
        last_heartbeat = time.monotonic()
        try:
            self.rt.serve()
            self.rt.report_health(redis_ok=True)
            while not self._stop_requested and any(t.is_alive() for t in threads):
                redis_ok = True
                try:
                    time.sleep(_HOUSEKEEPING_S)
                    if time.monotonic() - last_heartbeat >= _HEARTBEAT_S:
                        self.heartbeat()
                        last_heartbeat = time.monotonic()
                    self._check_suspension(burst)
                    if self.should_run_maintenance_tasks:
                        self.run_maintenance_tasks()
                except StopRequested:
                    break
                except redis.RedisError as err:
                    redis_ok = False
                    log.warning("worker housekeeping: %s", err)
                self.rt.report_health(redis_ok)
        except StopRequested:
            pass
        finally:
            self.rt.report_health(redis_ok=False, serving=False)  # not ready while stopping
            self._lanes_stop.set()  # warm stop: each lane finishes the job it holds
            for t in threads:
                t.join()
            self.teardown()  # type: ignore[no-untyped-call]
            self.rt.retire()
        return True

    def _set_connection(self, connection: redis.Redis) -> redis.Redis:
        """RQ's sets the client's socket timeout past its own 405 s dequeue wait; Warden's
        lanes block 1 s at most, and the client's own short timeout (WorkerRuntime) keeps
        the main loop turning while Redis does not answer: live, not ready."""
        return connection

    def _check_suspension(self, burst: bool) -> None:
        if is_suspended(self.connection, self):
            if burst:
                raise StopRequested
            if not self._paused.is_set():
                self._paused.set()
                self.log.info("Worker %s: suspended, run `rq resume` to resume", self.name)
        elif self._paused.is_set():
            self._paused.clear()

    def unsubscribe(self) -> None:
        """RQ's, with a bounded wait. redis-py 8's ``PubSubWorkerThread.stop()`` joins the
        thread, and after a Redis restart that thread sits in ``get_message`` for RQ's 60 s
        ``sleep_time`` (its subscription gone), so a worker took a minute to stop after any
        Redis outage. The thread is a daemon: stop it, wait a second at most, go on."""
        thread = self.pubsub_thread
        if thread is None:
            return
        self.pubsub.unsubscribe()
        stopper = threading.Thread(target=thread.stop, name="warden-pubsub-stop", daemon=True)
        stopper.start()
        stopper.join(timeout=1)
        self.pubsub.close()

    def run_maintenance_tasks(self) -> None:
        """RQ's registry maintenance for every tenant's queue, not just the base queue."""
        self.queues = [Queue(name, connection=self.connection)
                       for name in self.rt.queue.queue_names()]
        super().run_maintenance_tasks()  # type: ignore[no-untyped-call]

    # -- lanes ------------------------------------------------------------------------------
    def _lane(self, burst: bool) -> None:
        backoff = 0.5
        while not self._lanes_stop.is_set():
            if self._paused.is_set():
                time.sleep(_HOUSEKEEPING_S)
                continue
            try:
                taken = self.rt.queue.take(self.rt.settings.lease_s, self.rt.pools)
                if taken is None:
                    if burst:
                        return
                    # Idle: sleep until an enqueue rings (or a second passes: a tenant at
                    # its running cap has work again when one of its jobs ends elsewhere).
                    self.connection.blpop([pool_key("doorbell", p) for p in self.rt.pools],
                                         _LANE_BLOCK_S)
                    continue
                backoff = 0.5
            except (redis.ConnectionError, redis.TimeoutError) as err:
                log.warning("worker could not reach Redis (%s); retrying in %.1f s", err, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            carried = False
            next_job: tuple[str, str, str] | None = taken
            while next_job is not None:
                current, next_job = next_job, None
                try:
                    next_job = self._process(current, carried)
                    carried = True
                except redis.RedisError:
                    # Lost Redis mid-job: the lease expires and a reaper re-runs or fails it.
                    log.exception("job %s: Redis error; its lease will expire", current[0])

    def _busy_change(self, delta: int, pipe: Any) -> None:
        """Mark the worker busy/idle in RQ (in ``pipe``) when the first/last job runs."""
        with self._busy_lock:
            before = self._busy
            self._busy += delta
            if pipe is None:
                return
            if before == 0 and self._busy > 0:
                self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            elif before > 0 and self._busy == 0:
                self.set_state(WorkerStatus.IDLE, pipeline=pipe)

    def _process(self, taken: tuple[str, str, str], carried: bool) -> tuple[str, str, str] | None:
        """Run one job (rq id, queue name, tenant as TAKE gave it); the next job if the
        finishing MULTI took one. ``carried``: this job was taken by the previous one's
        MULTI (the worker is still marked busy)."""
        store = self.rt.store
        rq_id, queue_name, tenant = taken
        job_id = warden_id(rq_id)
        job = Job(id=rq_id, connection=self.connection)
        job.origin = queue_name
        token, start = store.start_args(job_id, tenant or None)
        pipe = self.connection.pipeline()
        pipe.evalsha(*start)
        pipe.hmget(job_key(job_id), *_RECORD_FIELDS)
        execution = Execution.create(job, _EXECUTION_TTL_S, pipe, worker_name=self.name)
        job.prepare_for_execution(self.name, pipe)
        pipe.persist(job.key)
        pipe.lrem(f"rq:queue:{queue_name}:intermediate", 1, rq_id)
        pipe.zrem(TAKEN, taken_member(queue_name, rq_id))
        if not carried:
            self._busy_change(+1, pipe)
        try:
            outcome, fields = pipe.execute(raise_on_error=False)[:2]
        except BaseException:
            self._busy_change(-1, None)
            raise
        if isinstance(outcome, redis.exceptions.NoScriptError):
            store.load_scripts()
            token, start = store.start_args(job_id, tenant or None)
            outcome = self.connection.evalsha(*start)
            fields = self.connection.hmget(job_key(job_id), *_RECORD_FIELDS)
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(fields, Exception):
            raise fields
        started = time.monotonic()
        finish: list[Any] | None = None
        if outcome == b"ok":
            wait_s = float(start[6]) - float(fields[2]) if fields[2] else None
            context = JobContext.of([fields[4], None, fields[5], None])
            finish = self._run(job_id, token, fields[0], fields[1] == b"1", wait_s, fields[3],
                               context)
        elif outcome == b"missing" and job_id == rq_id:
            log.warning("job %s: no Warden record (expired or deleted); dropped", job_id)
        elif outcome == b"missing":
            self._legacy(rq_id)  # queued by an older Warden: RQ ids were not Warden ids
        return self._finish(job, execution, finish, time.monotonic() - started)

    def _run(self, job_id: str, token: str, spec_raw: bytes | None,
             cancel_requested: bool, queue_wait_s: float | None,
             judge_task: bytes | None, context: JobContext) -> list[Any]:
        """Run a job this worker now holds (a judge job through ``workers.judging``); the
        FINISH script's arguments (``context``: its record's, which name FINISH's keys)."""
        store = self.rt.store
        cancel = CancelToken()
        if cancel_requested:
            cancel.cancel()
        self.rt.track(job_id, token, cancel, context.tenant)
        spec: JobSpec | None = None

        def finish(state: JobState, result: RunResult | None, error: str | None = None
                   ) -> list[Any]:
            account = account_args(spec, result, time.time(), self.rt.usage_retention_s,
                                   queue_wait_s)
            return store.finish_args(job_id, token, state,
                                     _result_json(result) if result else "", error, account,
                                     context.tenant, context.fuel_day)

        try:
            spec = JobSpec.model_validate_json(spec_raw) if spec_raw else None
            if spec is not None and judge_task:
                result = judge_worker(self.rt).run(job_id, judge_task.decode(), spec, cancel)
            else:
                result = run_spec(spec, cancel) if spec is not None else None
            if result is None:
                return finish(JobState.FAILED, None, "job spec or module expired")
            state = (JobState.CANCELLED if result.status is RunStatus.CANCELLED
                     else JobState.FINISHED)
            return finish(state, result)
        except Exception:
            log.exception("job %s failed outside the sandbox", job_id)
            return finish(JobState.FAILED, None, "internal error (see worker log)")
        finally:
            self.rt.untrack(job_id)

    def _finish(self, job: Job, execution: Execution, finish: list[Any] | None,
                elapsed_s: float) -> tuple[str, str, str] | None:
        """Record the job and clean up RQ's keys in one MULTI, which also takes the next
        job (the TAKE script: the fair choice across tenants, as an idle lane makes it)
        unless the worker is stopping or suspended: one round trip per job saved under load
        (the take's read of the rings, which declares their tenants' keys, is one more)."""
        take_next = not (self._stop_requested or self._lanes_stop.is_set()
                         or self._paused.is_set())
        take: list[Any] = []
        if take_next:
            try:  # reads the rings (their tenants' keys): a failure must not cost the finish
                take = self.rt.queue.take_args(self.rt.settings.lease_s, self.rt.pools)
            except redis.RedisError:
                take_next = False
        pipe = self.connection.pipeline()
        if finish is not None:
            pipe.evalsha(*finish)
        execution.delete(job, pipe)
        pipe.delete(job.key, job.dependents_key, job.dependencies_key, Result.get_key(job.id))  # type: ignore[no-untyped-call]
        pipe.hincrby(self.key, "successful_job_count", 1)
        pipe.hincrbyfloat(self.key, "total_working_time", elapsed_s)
        if take_next:
            pipe.evalsha(*take)
        else:
            self._busy_change(-1, pipe)
        try:
            results = pipe.execute(raise_on_error=False)
        except BaseException:
            if take_next:
                self._busy_change(-1, None)
            raise
        reply = results[-1] if take_next else None
        if isinstance(reply, redis.exceptions.NoScriptError):
            self.rt.queue.load_scripts()  # the idle lane's take (a Script object) retries
        taken = None if isinstance(reply, Exception) else taken_reply(reply)
        if finish is not None:
            self._check_recorded(results[0], finish, warden_id(job.id))
        if take_next and is_stale(reply):  # the ring changed since take_args read it
            try:
                taken = self.rt.queue.take(self.rt.settings.lease_s, self.rt.pools)
            except redis.RedisError:
                taken = None  # the idle lane takes again
        if take_next and taken is None:
            self._busy_change(-1, self.connection)  # nothing queued: idle
        return taken

    def _check_recorded(self, recorded: Any, finish: list[Any], job_id: str) -> None:
        try:
            if isinstance(recorded, redis.exceptions.NoScriptError):
                self.rt.store.load_scripts()  # same sha: a script's sha1 is of its text
                recorded = self.connection.evalsha(*finish)
        except redis.RedisError as err:
            recorded = err
        if isinstance(recorded, Exception):
            log.error("job %s: result not recorded (%s); its lease will expire", job_id,
                      recorded)
        elif not recorded:
            log.warning("job %s: lease lost before its result was recorded", job_id)

    def _legacy(self, rq_id: str) -> None:
        """A job enqueued with an RQ-generated id: its Warden id is the task's argument."""
        from workers.tasks import execute

        try:
            job = Job.fetch(rq_id, connection=self.connection)
        except Exception:
            log.warning("job %s: neither a Warden record nor an RQ job; dropped", rq_id)
            return
        if job.func_name == "workers.tasks.execute" and job.args:
            execute(str(job.args[0]))


def _result_json(result: RunResult) -> str:
    return result.model_dump_json()


def run_worker(burst: bool = False) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    try:
        rt = runtime()  # connect and build the sandbox before taking jobs
        worker = WardenWorker(rt, rt.settings.worker_lanes)
    except redis.ConnectionError as exc:  # e.g. Redis stopping while this worker starts
        log.error("cannot reach Redis at start-up (%s); exiting", exc)
        raise SystemExit(1) from None
    worker.work(burst=burst, logging_level="WARNING")
