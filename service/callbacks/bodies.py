"""What a callback sends, by the style of API the job came in through: Warden's record
(POST, outputs in base64), or Judge0's submission (PUT, base64, Judge0's default fields,
as Judge0 sends it)."""

from __future__ import annotations

import json
from typing import Final

from service.judge0.submissions import DEFAULT_FIELDS, view_of_fields
from workers.store import record_from_fields

WARDEN: Final = "warden"
JUDGE0: Final = "judge0"
METHODS: Final = {WARDEN: "POST", JUDGE0: "PUT"}


def body(style: str, job_id: str, fields: dict[bytes, bytes], fuel_per_second: int
         ) -> bytes | None:
    """The callback's body for a job's hash fields; None if the job is gone."""
    if style != JUDGE0:
        record = record_from_fields(job_id, fields)
        return None if record is None else record.model_dump_json(
            exclude={"callback"}).encode()
    shown = view_of_fields(job_id, fields, DEFAULT_FIELDS, True, fuel_per_second)
    return None if shown is None else json.dumps(shown).encode()
