"""The reaper: puts back the jobs of workers that died, wherever it runs.

A worker renews its running jobs' leases; one that dies stops renewing, and the reaper
re-queues (or, past ``max_attempts``, fails) each job whose lease expired, and puts back a
job a worker took off a queue but never started. It runs in every worker *and* in every API
process, so recovery does not wait for a worker to be alive (with workers being killed
over and over, none may be). Several reapers at once are safe: each step is one script that
acts only on a lease that is still expired.

A re-queued job goes to the *front* of its tenant's queue: it already waited its turn once.
The dead run's RQ keys go (its job hash, left ``started`` with no TTL, and its execution
records): RQ's maintenance would otherwise move it to the failed registry, and ``rq info``
would show a failure for a job Warden re-ran or ended.
"""

from __future__ import annotations

import logging
import threading

import redis
from rq.exceptions import NoSuchJobError
from rq.executions import ExecutionRegistry
from rq.job import Job

from workers.queue import JobQueue, warden_id
from workers.store import JobStore

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self, store: JobStore, queue: JobQueue, lease_s: float,
                 max_attempts: int) -> None:
        self.store = store
        self.queue = queue
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        # Checks twice per lease (at most every 2 s): a dead run is found within 1.5 leases.
        self.period_s = min(2.0, lease_s / 2)

    def reap_once(self) -> int:
        """One pass; how many jobs it put back or ended."""
        done = 0
        for job_id in self.store.expired_leases():
            dead_run = self.store.rq_id(job_id)  # read before a re-queue gives it a new one
            try:
                outcome = self.store.reap(job_id, self.max_attempts,
                                          self.queue.requeue_commands(job_id))
            except (redis.ConnectionError, redis.TimeoutError):
                raise  # Redis itself: the pass waits it out (run)
            except Exception:  # one job's bug must not hold back the others' recovery
                log.exception("job %s: could not be reaped", job_id)
                continue
            if outcome == "requeue":
                log.warning("job %s: its worker died; running it again", job_id)
            if outcome in ("requeue", "ended"):
                discard_dead_run(self.store.r, dead_run)
                done += 1
        for queue_name, rq_id in self.store.stuck_takes(self.lease_s):
            # Jobs a worker took off a queue but did not start for a whole lease: that worker
            # died between the two steps (a live one starts a job within milliseconds).
            if self.store.unstick(self.queue.rq.key, queue_name, rq_id, warden_id(rq_id)):
                log.warning("job %s: taken by a worker that never started it; queued again",
                            rq_id)
                done += 1
        return done

    def run(self, stop: threading.Event) -> None:
        """Reap every ``period_s`` until ``stop`` is set; Redis errors are waited out."""
        while not stop.wait(self.period_s):
            try:
                self.reap_once()
            except redis.RedisError:
                log.warning("reaper could not reach Redis")
            except Exception:  # a bug must not stop recovery for good: the next pass retries
                log.exception("reaper pass failed")

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="warden-reaper",
                                  daemon=True)
        thread.start()
        return thread


def discard_dead_run(client: redis.Redis, rq_id: str) -> None:
    """Delete the RQ keys of a run whose worker died (RQ's own key names, through RQ's
    classes): its executions, their started-registry entries, the job hash. A hung worker
    that wakes later finds them gone; its FINISH is refused anyway (its lease is stale)."""
    try:
        job = Job.fetch(rq_id, connection=client)
    except NoSuchJobError:
        return
    pipe = client.pipeline()
    ExecutionRegistry(job_id=rq_id, connection=client).delete(job, pipe)
    pipe.delete(job.key, job.dependents_key, job.dependencies_key)
    pipe.execute()
