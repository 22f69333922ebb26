"""Job records as response bodies: outputs as standard base64 (the default) or, when the
caller asks with ``?encoding=text``, as UTF-8 text.

Text is a convenience for the usual case; bytes that are not UTF-8 are never altered or
dropped. In text form every result says how its outputs are written (``result.encoding``):
``text``, or ``base64`` for a result whose stdout or stderr is not valid UTF-8. So one
binary output never costs a caller the answer: a submit that waited still names its job,
a listing page still lists every job.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response

from sandboxes.schema import JobList, JobRecord


class Encoding(StrEnum):
    BASE64 = "base64"
    TEXT = "text"


EncodingQuery = Annotated[
    Encoding,
    Query(description="How stdout and stderr come back: `base64` (standard base64 of the "
                      "exact bytes) or `text` (UTF-8 strings; a result whose output is not "
                      "valid UTF-8 keeps base64 and says `\"encoding\": \"base64\"`)"),
]

_OUTPUTS = ("stdout", "stderr")


def _as_text(record: JobRecord) -> dict[str, Any]:
    body = record.model_dump(mode="json")
    if record.result is not None:
        try:
            texts = {name: getattr(record.result, name).decode("utf-8") for name in _OUTPUTS}
        except UnicodeDecodeError:
            body["result"]["encoding"] = Encoding.BASE64.value
        else:
            body["result"].update(texts, encoding=Encoding.TEXT.value)
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
