"""Job records as response bodies: outputs as standard base64 (the default) or, when the
caller asks with ``?encoding=text``, as UTF-8 text.

Text is a convenience for the usual case; bytes that are not UTF-8 are never altered or
dropped: such a response is a 406 problem telling the caller to ask for base64 (Judge0
does the same), so what a caller reads is always exactly what the guest wrote.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response

from sandboxes.schema import JobList, JobRecord
from service.problems import Problem


class Encoding(StrEnum):
    BASE64 = "base64"
    TEXT = "text"


EncodingQuery = Annotated[
    Encoding,
    Query(description="How stdout and stderr come back: `base64` (standard base64 of the "
                      "exact bytes) or `text` (UTF-8 strings; 406 when an output is not "
                      "valid UTF-8: ask for base64 then)"),
]

_OUTPUTS = ("stdout", "stderr")


def _as_text(record: JobRecord) -> dict[str, Any]:
    body = record.model_dump(mode="json")
    if record.result is not None:
        for name in _OUTPUTS:
            try:
                body["result"][name] = getattr(record.result, name).decode("utf-8")
            except UnicodeDecodeError:
                raise Problem(
                    406, "output-not-text", "The output is not UTF-8 text",
                    f"job {record.id}'s {name} is not valid UTF-8: ask with "
                    "encoding=base64 for its exact bytes",
                ) from None
    return body


def record_response(record: JobRecord, encoding: Encoding, status_code: int = 200) -> Response:
    if encoding is Encoding.BASE64:  # already validated: serialized once, no second pass
        return Response(record.model_dump_json(), status_code, media_type="application/json")
    return Response(json.dumps(_as_text(record)), status_code, media_type="application/json")


def list_response(page: JobList, encoding: Encoding, status_code: int = 200) -> Response:
    if encoding is Encoding.BASE64:
        return Response(page.model_dump_json(), status_code, media_type="application/json")
    body = {"jobs": [None if r is None else _as_text(r) for r in page.jobs],
            "next_cursor": page.next_cursor}
    return Response(json.dumps(body), status_code, media_type="application/json")
