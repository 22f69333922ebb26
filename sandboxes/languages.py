"""The languages registry: the one list of source languages Warden compiles and runs.

Filled by the source-languages work (C, C++, Rust, Zig, Python, JavaScript); the API's
``GET /v1/languages`` and ``warden languages`` read it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Language(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    version: str
    file_name: str
    judge0_id: int


LANGUAGES: dict[str, Language] = {}
