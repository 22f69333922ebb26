"""What a callback sends, by the style of API the job came in through: Warden's record
(POST, outputs in base64), or Judge0's submission (PUT, base64, Judge0's default fields,
as Judge0 sends it)."""

from __future__ import annotations

import json
from typing import Final

from sandboxes.schema import JobSpec
from service.judge0.submissions import DEFAULT_FIELDS, FIELD, view
from workers.store import record_from_fields

WARDEN: Final = "warden"
JUDGE0: Final = "judge0"
METHODS: Final = {WARDEN: "POST", JUDGE0: "PUT"}


def body(style: str, job_id: str, fields: dict[bytes, bytes], fuel_per_second: int
         ) -> bytes | None:
    """The callback's body for a job's hash fields; None if the job is gone."""
    record = record_from_fields(job_id, fields)
    if record is None:
        return None
    record = record.model_copy(update={"callback": None})
    if style != JUDGE0:
        return record.model_dump_json(exclude={"callback"}).encode()
    kept = json.loads(fields.get(FIELD.encode()) or b"{}")
    kept.setdefault("fuel_per_second", fuel_per_second)
    spec = JobSpec.model_validate_json(fields[b"spec"]) if b"spec" in fields else None
    return json.dumps(view(record, kept, DEFAULT_FIELDS, True, spec)).encode()
