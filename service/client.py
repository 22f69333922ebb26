"""A typed Python client for the Warden API (httpx).

Every route has a method returning the API's own models (``sandboxes.schema``)::

    with WardenClient("http://127.0.0.1:8000") as warden:
        record = warden.submit_and_wait(JobSubmission(wat=WAT))
        print(record.result.stdout if record.result else record.error)

An API error (any 4xx/5xx) raises :class:`WardenError` carrying the RFC 9457 problem
(``status``, ``type``, ``title``, ``detail``); an API that cannot be reached raises httpx's
own ``httpx.TransportError`` (``ConnectError``, ``ReadTimeout``…). A wait that runs out
is not an error: the record comes back still queued or running (the API's 202).
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Sequence
from typing import Any, Final

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter

from judge.problem import (
    BlobStored,
    ProblemList,
    ProblemRecord,
    ProblemUpload,
    SubmissionAccepted,
    SubmissionCreate,
    SubmissionRecord,
)
from sandboxes.languages.registry import Language
from sandboxes.schema import (
    BatchAccepted,
    Grants,
    JobAccepted,
    JobList,
    JobRecord,
    JobState,
    JobSubmission,
    Limits,
)
from sandboxes.settings import Settings
from tenancy.bootstrap import read_key_file
from tenancy.models import (
    CreatedKey,
    KeyInfo,
    KeyList,
    TenantCreate,
    TenantInfo,
    TenantList,
    TenantUpdate,
)

# service.problems.TYPE_BASE, not imported: the client needs no FastAPI.
PROBLEM_TYPE_BASE: Final = "https://warden.dev/problems/"
DEFAULT_URL: Final = "http://127.0.0.1:8000"

_LANGUAGES = TypeAdapter(list[Language])


def find_api_key(settings: Settings, explicit: str | None = None) -> str | None:
    """The key to send: ``explicit`` (``--key``), else WARDEN_API_KEY, else the key
    ``warden up`` stored in the data dir."""
    return explicit or settings.api_key or read_key_file(settings.data_dir)


def api_url(settings: Settings) -> str:
    """The URL to reach the API that ``settings`` makes listen (``WARDEN_HOST``/``PORT``):
    a wildcard listen address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104
        settings.host, settings.host
    )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


class WardenError(Exception):
    """An API error: the problem+json body's fields (RFC 9457)."""

    def __init__(self, status: int, problem: dict[str, Any],
                 retry_after: float | None = None) -> None:
        self.status = status
        self.problem = problem
        self.type: str = str(problem.get("type") or "about:blank")
        self.title: str = str(problem.get("title") or f"HTTP {status}")
        detail = problem.get("detail")
        self.detail: str | None = None if detail is None else str(detail)
        self.retry_after = retry_after
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))

    @property
    def kind(self) -> str:
        """The stable short name of the problem type, e.g. ``"job-not-found"``."""
        return self.type.removeprefix(PROBLEM_TYPE_BASE)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    """``/readyz``: ready when Redis answers (workers may be none: ``workers`` says)."""

    model_config = ConfigDict(frozen=True)

    ready: bool
    workers: int = 0
    reason: str | None = None


class WardenClient:
    def __init__(self, base_url: str = DEFAULT_URL, timeout_s: float = 30.0,
                 api_key: str | None = None) -> None:
        """``api_key``: sent as ``Authorization: Bearer`` on every request (every route
        but health, readiness, languages and the docs needs one)."""
        self.base_url = base_url
        self._timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers)

    @classmethod
    def from_settings(cls, settings: Settings, timeout_s: float = 30.0) -> WardenClient:
        """The API ``settings`` point at, with the key they name (WARDEN_API_KEY, else the
        one ``warden up`` stored in the data dir)."""
        return cls(api_url(settings), timeout_s, find_api_key(settings))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WardenClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------
    def _timeout(self, wait_s: float) -> float:
        """A waiting request's timeout: the wait, plus the usual timeout for the rest."""
        return self._timeout_s + (wait_s if math.isfinite(wait_s) else 600.0)

    def _request(self, method: str, path: str, *, wait_s: float = 0.0,
                 **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, timeout=self._timeout(wait_s), **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response

    @staticmethod
    def _wait_param(wait_s: float) -> str:
        return "true" if math.isinf(wait_s) else repr(float(wait_s))

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, submission: JobSubmission) -> str:
        """Queue a job; its id."""
        r = self._request("POST", "/v1/jobs", json=_body(submission))
        return JobAccepted.model_validate_json(r.content).id

    def submit_and_wait(self, submission: JobSubmission, wait_s: float = 60.0) -> JobRecord:
        """Queue a job and wait up to ``wait_s`` (capped by the server's WARDEN_MAX_WAIT_S)
        for it to end: its record, terminal unless the wait ran out first (a 202)."""
        if wait_s <= 0:
            raise ValueError("wait_s must be > 0 (use submit() not to wait)")
        r = self._request("POST", "/v1/jobs", wait_s=wait_s, json=_body(submission),
                          params={"wait": self._wait_param(wait_s)})
        return _record(r)

    def submit_batch(self, submissions: Sequence[JobSubmission]) -> list[str]:
        """Queue up to 100 jobs at once (all validated first: one bad job queues none)."""
        r = self._request("POST", "/v1/jobs/batch",
                          json={"jobs": [_body(s) for s in submissions]})
        return BatchAccepted.model_validate_json(r.content).ids

    def get(self, job_id: str, wait_s: float = 0.0) -> JobRecord:
        """A job's record; with ``wait_s`` > 0, once it ends or the wait runs out (the API
        answers 202 then, with the record still queued or running)."""
        params = {"wait": self._wait_param(wait_s)} if wait_s else None
        r = self._request("GET", f"/v1/jobs/{job_id}", wait_s=wait_s, params=params)
        return _record(r)

    def wait(self, job_id: str, timeout_s: float | None = None) -> JobRecord:
        """Wait (server-side, a minute at a time) until the job ends, or ``timeout_s``
        passes: the last record read (not terminal if the time ran out)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = 60.0 if deadline is None else min(60.0, deadline - time.monotonic())
            record = self.get(job_id, wait_s=max(left, 0.0))
            if record.state.terminal or left <= 0:
                return record

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        """Up to 100 records in the order asked; None for an unknown id."""
        r = self._request("GET", "/v1/jobs", params={"ids": ",".join(job_ids)})
        return JobList.model_validate_json(r.content).jobs

    def list_jobs(self, state: JobState | None = None, limit: int = 20,
                  cursor: str | None = None) -> tuple[list[JobRecord], str | None]:
        """A page of the most recent jobs, newest first (``limit`` 1..100, optionally only
        those in ``state``), and the cursor of the next page (None: this is the last).
        Pass the cursor back unchanged: it is opaque."""
        params: dict[str, str | int] = {"limit": limit}
        if state is not None:
            params["state"] = state.value
        if cursor is not None:
            params["cursor"] = cursor
        page = JobList.model_validate_json(self._request("GET", "/v1/jobs", params=params).content)
        return [record for record in page.jobs if record is not None], page.next_cursor

    def cancel(self, job_id: str, wait_s: float = 5.0) -> JobRecord:
        """Cancel a queued or running job: its record once a running job has stopped, or
        (202) still running if it has not stopped within ``wait_s``. Cancelling a cancelled
        job again changes nothing; a job that already finished or failed is a
        :class:`WardenError` 409 (``kind`` ``"job-finished"``)."""
        r = self._request("DELETE", f"/v1/jobs/{job_id}", wait_s=wait_s,
                          params={"wait": self._wait_param(wait_s)})
        return _record(r)

    def run_module(
        self, module: bytes, limits: Limits | None = None, grants: Grants | None = None,
        wait_s: float = 60,
    ) -> JobRecord:
        """Submit a .wasm (binary) or .wat (text) module and wait for its record."""
        if module.startswith(b"\0asm"):
            sub = JobSubmission(wasm_base64=base64.b64encode(module).decode(),
                                limits=limits or Limits(), grants=grants or Grants())
        else:
            sub = JobSubmission(wat=module.decode(), limits=limits or Limits(),
                                grants=grants or Grants())
        return self.submit_and_wait(sub, wait_s)

    # -- judge problems --------------------------------------------------------------------
    def put_blob(self, data: bytes) -> BlobStored:
        r = self._request("POST", "/v1/blobs", content=data,
                          headers={"Content-Type": "application/octet-stream"})
        return BlobStored.model_validate_json(r.content)

    def put_problem(self, problem_id: str, upload: ProblemUpload) -> ProblemRecord:
        r = self._request("PUT", f"/v1/problems/{problem_id}", json=upload.model_dump(
            mode="json"))
        return ProblemRecord.model_validate_json(r.content)

    def get_problem(self, problem_id: str, version: int | None = None) -> ProblemRecord:
        params = {"version": version} if version is not None else None
        r = self._request("GET", f"/v1/problems/{problem_id}", params=params)
        return ProblemRecord.model_validate_json(r.content)

    def list_problems(self) -> list[str]:
        return ProblemList.model_validate_json(
            self._request("GET", "/v1/problems").content).problems

    def delete_problem(self, problem_id: str) -> None:
        self._request("DELETE", f"/v1/problems/{problem_id}")

    def submit_solution(self, problem_id: str, body: SubmissionCreate,
                        wait_s: float = 60.0) -> SubmissionRecord | SubmissionAccepted:
        """Judge a submission; its record once judged (or when the wait runs out)."""
        r = self._request("POST", f"/v1/problems/{problem_id}/submissions", wait_s=wait_s,
                          params={"wait": self._wait_param(wait_s)},
                          json=body.model_dump(mode="json", exclude_none=True))
        if wait_s <= 0:
            return SubmissionAccepted.model_validate_json(r.content)
        return SubmissionRecord.model_validate_json(r.content)

    def get_submission(self, problem_id: str, submission_id: str,
                       wait_s: float = 0.0) -> SubmissionRecord:
        r = self._request("GET", f"/v1/problems/{problem_id}/submissions/{submission_id}",
                          wait_s=wait_s, params={"wait": self._wait_param(wait_s)})
        return SubmissionRecord.model_validate_json(r.content)

    # -- tenants and keys (admin keys; own keys for /v1/keys) --------------------------------
    def create_tenant(self, body: TenantCreate) -> TenantInfo:
        r = self._request("POST", "/v1/admin/tenants", json=body.model_dump(
            mode="json", exclude_unset=True, exclude_none=True))
        return TenantInfo.model_validate_json(r.content)

    def list_tenants(self) -> list[TenantInfo]:
        return TenantList.model_validate_json(
            self._request("GET", "/v1/admin/tenants").content).tenants

    def get_tenant(self, tenant: str) -> TenantInfo:
        return TenantInfo.model_validate_json(
            self._request("GET", f"/v1/admin/tenants/{tenant}").content)

    def update_tenant(self, tenant: str, body: TenantUpdate) -> TenantInfo:
        r = self._request("PATCH", f"/v1/admin/tenants/{tenant}", json=body.model_dump(
            mode="json", exclude_unset=True, exclude_none=True))
        return TenantInfo.model_validate_json(r.content)

    def create_key(self, tenant: str | None = None, name: str = "",
                   admin: bool = False) -> CreatedKey:
        """A new key for ``tenant`` (admin), or for the caller's own tenant (None)."""
        path = f"/v1/admin/tenants/{tenant}/keys" if tenant else "/v1/keys"
        r = self._request("POST", path, json={"name": name, "admin": admin})
        return CreatedKey.model_validate_json(r.content)

    def list_keys(self, tenant: str | None = None, everyone: bool = False) -> list[KeyInfo]:
        """The caller's own keys; a tenant's (admin); or every tenant's (admin, ``everyone``)."""
        path = ("/v1/admin/keys" if everyone else
                f"/v1/admin/tenants/{tenant}/keys" if tenant else "/v1/keys")
        return KeyList.model_validate_json(self._request("GET", path).content).keys

    def revoke_key(self, key_id: str, admin: bool = False) -> KeyInfo:
        """Revoke one of the caller's keys, or (``admin``) any tenant's key."""
        path = f"/v1/admin/keys/{key_id}" if admin else f"/v1/keys/{key_id}"
        return KeyInfo.model_validate_json(self._request("DELETE", path).content)

    # -- meta ------------------------------------------------------------------------------
    def languages(self) -> list[Language]:
        return _LANGUAGES.validate_json(self._request("GET", "/v1/languages").content)

    def health(self) -> Health:
        """``/healthz``: the API process answers."""
        return Health.model_validate(self._request("GET", "/healthz").json())

    def ready(self) -> Readiness:
        """``/readyz``; a 503 ``not-ready`` is ``Readiness(ready=False, reason=…)``, not an
        error (other errors still raise)."""
        try:
            body = self._request("GET", "/readyz").json()
        except WardenError as err:
            if err.status == 503 and err.kind == "not-ready":
                return Readiness(ready=False, reason=err.title)
            raise
        return Readiness(ready=body.get("status") == "ready", workers=int(body["workers"]))


def _body(submission: JobSubmission) -> dict[str, Any]:
    """What the caller set, nothing more: unset limits stay the server's (and the
    language's) defaults rather than being pinned to this client's copy of them."""
    body: dict[str, Any] = submission.model_dump(mode="json", exclude_unset=True,
                                                 exclude_none=True)
    return body


def _record(response: httpx.Response) -> JobRecord:
    """A record answer: 200 for a job that has ended, 202 for one still queued or running
    when a wait ran out. Any other success status is not this API's: an error."""
    if response.status_code not in (200, 202):
        raise WardenError(response.status_code, {
            "title": f"unexpected HTTP {response.status_code} for a job record",
            "detail": response.text[:500] or None})
    return JobRecord.model_validate_json(response.content)


def _error(response: httpx.Response) -> WardenError:
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"title": response.reason_phrase or f"HTTP {response.status_code}",
                   "detail": response.text[:500] or None}
    retry = response.headers.get("retry-after")
    try:
        retry_after = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    return WardenError(response.status_code, problem, retry_after)
