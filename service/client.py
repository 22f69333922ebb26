"""A typed Python client for the Warden API (httpx)."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from sandboxes.schema import Grants, JobRecord, JobSubmission, Limits


class WardenError(Exception):
    """An API error: the problem+json body's fields."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title')}: {problem.get('detail', '')}")
        self.status = status
        self.problem = problem


class WardenClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", timeout_s: float = 90.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WardenClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.text}
            raise WardenError(response.status_code, problem)
        return response.json()

    def submit(self, submission: JobSubmission, wait_s: float = 0) -> JobRecord | str:
        """The job id, or with ``wait_s`` > 0 the record once it ends (or the wait runs out)."""
        body = submission.model_dump(mode="json", exclude_none=True)
        data = self._check(self._http.post("/v1/jobs", json=body, params={"wait": wait_s}))
        if wait_s > 0:
            return JobRecord.model_validate(data)
        return str(data["id"])

    def run_module(
        self, module: bytes, limits: Limits | None = None, grants: Grants | None = None,
        wait_s: float = 60,
    ) -> JobRecord:
        if module.startswith(b"\0asm"):
            sub = JobSubmission(wasm_base64=base64.b64encode(module).decode(),
                                limits=limits or Limits(), grants=grants or Grants())
        else:
            sub = JobSubmission(wat=module.decode(), limits=limits or Limits(),
                                grants=grants or Grants())
        record = self.submit(sub, wait_s)
        assert isinstance(record, JobRecord)
        return record

    def get(self, job_id: str, wait_s: float = 0) -> JobRecord:
        data = self._check(self._http.get(f"/v1/jobs/{job_id}", params={"wait": wait_s}))
        return JobRecord.model_validate(data)

    def cancel(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(self._check(self._http.delete(f"/v1/jobs/{job_id}")))
