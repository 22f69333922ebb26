"""The one schema for what a run may use (Limits), may touch (Grants) and what it did (RunResult).

The service, the workers and the CLI import these models; nothing redefines them.
Every limit has a safe default and a hard maximum (LIMIT_BOUNDS); tenant maximums sit below
the hard maximum and are applied by the service.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sandboxes.units import format_size, parse_duration, parse_size

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB


class RunStatus(StrEnum):
    """How a run ended. Closed set: clients may switch on it."""

    OK = "ok"
    NONZERO_EXIT = "nonzero_exit"
    TRAP = "trap"
    FUEL_EXHAUSTED = "fuel_exhausted"
    WALL_TIMEOUT = "wall_timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    SCRATCH_LIMIT = "scratch_limit"
    CANCELLED = "cancelled"
    INVALID_MODULE = "invalid_module"
    LINK_ERROR = "link_error"
    UNSUPPORTED = "unsupported"
    COMPILE_ERROR = "compile_error"
    INTERNAL_ERROR = "internal_error"


# A run that ended so never started the guest: it has no run figures (time, fuel, memory).
NOT_RUN: Final = frozenset({RunStatus.COMPILE_ERROR, RunStatus.INVALID_MODULE,
                            RunStatus.LINK_ERROR, RunStatus.UNSUPPORTED})


class TrapKind(StrEnum):
    """Why the guest trapped, when status is ``trap``."""

    UNREACHABLE = "unreachable"
    STACK_OVERFLOW = "stack_overflow"
    MEMORY_OUT_OF_BOUNDS = "memory_out_of_bounds"
    TABLE_OUT_OF_BOUNDS = "table_out_of_bounds"
    INDIRECT_CALL_TO_NULL = "indirect_call_to_null"
    BAD_SIGNATURE = "bad_signature"
    INTEGER_DIVISION_BY_ZERO = "integer_division_by_zero"
    INTEGER_OVERFLOW = "integer_overflow"
    BAD_CONVERSION_TO_INTEGER = "bad_conversion_to_integer"
    # No longer produced (Warden's own proc_exit keeps every code); kept so that records
    # written by older workers still read.
    INVALID_EXIT_STATUS = "invalid_exit_status"
    OTHER = "other"


class Bound:
    """Default and hard maximum of one limit; the only place either number is written."""

    def __init__(self, default: float, maximum: float, minimum: float) -> None:
        self.default = default
        self.maximum = maximum
        self.minimum = minimum


LIMIT_BOUNDS: Final[dict[str, Bound]] = {
    # ~1 fuel per wasm instruction: 10^10 is a few seconds of compute.
    "fuel": Bound(10_000_000_000, 1_000_000_000_000, 1_000),
    "wall_time_s": Bound(10.0, 300.0, 0.001),
    # Compiling for this job: the jailed source compile and the module's machine code
    # (cache hits cost nothing). A job holds a lane at most compile + wall + the backstop
    # grace; the worker's own caps (WARDEN_*COMPILE_TIMEOUT_S) may be lower still.
    "compile_time_s": Bound(20.0, 60.0, 0.001),
    "memory_bytes": Bound(256 * MiB, 4 * GiB, 64 * KiB),
    # The wasm (native) stack: a C recursion of depth d needs ~50-70 bytes a level, so the
    # default takes ~10^5 levels and the maximum ~10^6. Rounded up to a power of two (one
    # engine per distinct value); guests run on threads with room for the maximum
    # (sandboxes/runtime/stacks.py).
    "stack_bytes": Bound(8 * MiB, 64 * MiB, 64 * KiB),
    "stdout_bytes": Bound(1 * MiB, 64 * MiB, 0),
    "stderr_bytes": Bound(256 * KiB, 64 * MiB, 0),
    "table_elements": Bound(100_000, 10_000_000, 0),
    "module_bytes": Bound(16 * MiB, 64 * MiB, 8),
}


def not_bool(value: Any) -> Any:
    """JSON ``true``/``false`` is not a number (pydantic's lax int would take it as 1/0)."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer, not a boolean")
    return value


def _size(value: Any) -> Any:
    return parse_size(value) if isinstance(value, str) else not_bool(value)


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else not_bool(value)


Bytes = Annotated[int, BeforeValidator(_size)]
Seconds = Annotated[float, BeforeValidator(_duration)]

# Standard base64 (RFC 4648 section 4: A-Z a-z 0-9 + / with = padding), as JSON Schema's
# "format: byte" means; never the URL-safe alphabet, which standard decoders misread.
BASE64_PATTERN: Final = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_BASE64_SCHEMA: Final = {
    "type": "string", "format": "byte", "contentEncoding": "base64",
    "pattern": BASE64_PATTERN,
}


def decode_base64(text: str) -> bytes:
    """Standard base64 to bytes; ValueError (one clear sentence) for anything else."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "not standard base64 (RFC 4648: A-Z, a-z, 0-9, '+', '/', with '=' padding)"
        ) from None


def _from_base64(value: Any) -> Any:
    return decode_base64(value) if isinstance(value, str) else value


def _to_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


# Bytes that JSON carries as standard base64, in and out (Python code passes bytes).
Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(_to_base64, return_type=str, when_used="json"),
    WithJsonSchema(_BASE64_SCHEMA),
]


# What a run wrote: standard base64 in JSON too, but its schema has no pattern, since the
# API can return outputs as text on request (``?encoding=text``).
OutputBytes = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(_to_base64, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64",
                    "description": "Standard base64 of the bytes (UTF-8 text instead when "
                                   "the API is asked for encoding=text and the result "
                                   "says `\"encoding\": \"text\"`)"}),
]


def _timestamp_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# A moment, as RFC 3339 text in UTC with microseconds ("2026-12-02T06:41:54.883602Z");
# unix seconds (what the job store keeps) are accepted on input.
Timestamp = Annotated[
    datetime,
    PlainSerializer(_timestamp_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _limit(name: str) -> Any:
    bound = LIMIT_BOUNDS[name]
    return Field(default=bound.default, ge=bound.minimum, le=bound.maximum)


class Limits(BaseModel):
    """Resource limits of one run. Sizes accept ``"64MiB"``-style strings, times ``"2s"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fuel: int = _limit("fuel")
    wall_time_s: Seconds = _limit("wall_time_s")
    compile_time_s: Seconds = _limit("compile_time_s")
    memory_bytes: Bytes = _limit("memory_bytes")
    stack_bytes: Bytes = _limit("stack_bytes")
    stdout_bytes: Bytes = _limit("stdout_bytes")
    stderr_bytes: Bytes = _limit("stderr_bytes")
    table_elements: int = _limit("table_elements")
    module_bytes: Bytes = _limit("module_bytes")


_LIMIT_WORDS: Final = {
    "fuel": "fuel", "wall_time_s": "wall time", "compile_time_s": "compile time",
    "memory_bytes": "memory", "stack_bytes": "stack", "stdout_bytes": "stdout",
    "stderr_bytes": "stderr", "table_elements": "table elements", "module_bytes": "module size",
    "quota_bytes": "the scratch quota", "stdin": "stdin",
}
_BOUND_WORDS: Final = {"less_than_equal": ("le", "at most"),
                       "greater_than_equal": ("ge", "at least"),
                       "bytes_too_long": ("max_length", "at most")}
_VALUE_ERROR_PREFIX: Final = "Value error, "  # pydantic's, before a validator's own message


def limit_message(loc: tuple[int | str, ...], error_type: str, ctx: dict[str, Any]) -> str | None:
    """A limit's bound error in the user's words ("memory at most 4 GiB" rather than
    "memory_bytes: less than or equal to 4294967296"), or None for any other error."""
    name = str(loc[-1]) if loc else ""
    if name not in _LIMIT_WORDS or error_type not in _BOUND_WORDS:
        return None
    key, words = _BOUND_WORDS[error_type]
    bound = ctx.get(key)
    if not isinstance(bound, int | float):
        return None
    if name.endswith("_bytes") or error_type == "bytes_too_long":
        shown = format_size(int(bound))
    elif name.endswith("_s"):
        shown = f"{bound:g} s"
    else:
        shown = f"{int(bound):,}"
    return f"{_LIMIT_WORDS[name]} must be {words} {shown}"


def error_message(error: Mapping[str, Any]) -> str:
    """One pydantic error's message in plain words: a bound as ``limit_message`` says it,
    a validator's own sentence without pydantic's "Value error, " before it."""
    loc = tuple(error.get("loc", ()))
    words = limit_message(loc, str(error.get("type", "")), dict(error.get("ctx") or {}))
    if words is not None:
        return words
    return str(error.get("msg", "")).removeprefix(_VALUE_ERROR_PREFIX)


MAX_ARGS: Final = 256
MAX_ARG_BYTES: Final = 4096
MAX_ENV: Final = 128
MAX_STDIN_BYTES: Final = 64 * MiB
MAX_FILES: Final = 256
MAX_CALLBACK_URL_LENGTH: Final = 2048
# Each maximum holds alone; one request carries at most WARDEN_MAX_BODY_BYTES in all.
MAX_FILES_TOTAL_BYTES: Final = 64 * MiB
MAX_SCRATCH_BYTES: Final = 1 * GiB
DEFAULT_SCRATCH_BYTES: Final = 16 * MiB
MAX_SCRATCH_ENTRIES: Final = 10_000  # files and directories a scratch dir may hold

SCRATCH_GUEST_DIR: Final = "/tmp"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")
_PART: Final = r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}"
FILE_NAME_PATTERN: Final = rf"^{_PART}(?:/{_PART}){{0,7}}$"  # check_file_name's rule
NO_NUL_PATTERN: Final = r"^[^\u0000]*$"


def check_file_name(name: str) -> str:
    """A granted file's relative name: plain components only, no ``..``, no absolute path."""
    parts = name.split("/")
    if len(parts) > 8 or not all(_PATH_PART.fullmatch(p) for p in parts):
        raise ValueError(
            f"file name {name!r} must be a relative path of up to 8 parts made of "
            "letters, digits, '_', '.', '+', '-' (no leading dot, no '..', no absolute path)"
        )
    return name


# Error types of rules no JSON Schema can state (the API gives each its own problem type)
FILES_TOO_LARGE: Final = "files_too_large"
FILE_INSIDE_FILE: Final = "file_inside_file"


class ScratchGrant(BaseModel):
    """A private writable directory at /tmp, empty at start, discarded after the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quota_bytes: Bytes = Field(
        default=DEFAULT_SCRATCH_BYTES, ge=0, le=MAX_SCRATCH_BYTES,
        description="Total bytes the guest may keep in the scratch dir",
    )


class Grants(BaseModel):
    """Everything a run may see. Anything not listed here does not exist for the guest.

    In JSON, ``stdin`` and file contents are base64.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    args: list[Annotated[str, Field(max_length=MAX_ARG_BYTES, pattern=NO_NUL_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_ARGS,
        description="Arguments after argv[0] (argv[0] is the program name)",
    )
    env: dict[str, Annotated[str, Field(max_length=MAX_ARG_BYTES, pattern=NO_NUL_PATTERN)]] = (
        Field(default_factory=dict, max_length=MAX_ENV,
              json_schema_extra={"propertyNames": {"pattern": _ENV_NAME.pattern}}))
    stdin: Base64Bytes = Field(default=b"", max_length=MAX_STDIN_BYTES)
    files: dict[str, Base64Bytes] = Field(
        default_factory=dict, max_length=MAX_FILES,
        description="Read-only files, visible at /<name> (relative names open too); "
        f"at most {MAX_FILES_TOTAL_BYTES} bytes in all, and no file inside another",
        json_schema_extra={"propertyNames": {"pattern": FILE_NAME_PATTERN}},
    )
    scratch: ScratchGrant | None = None

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"env name {name!r} is not a valid variable name")
            if "\0" in value:
                raise ValueError(f"env value of {name!r} contains a NUL byte")
        return env

    @field_validator("args")
    @classmethod
    def _args_no_nul(cls, args: list[str]) -> list[str]:
        if any("\0" in a for a in args):
            raise ValueError("arguments may not contain NUL bytes")
        return args

    @field_validator("files")
    @classmethod
    def _file_names(cls, files: dict[str, bytes]) -> dict[str, bytes]:
        for name in files:
            check_file_name(name)
        if sum(len(v) for v in files.values()) > MAX_FILES_TOTAL_BYTES:
            raise PydanticCustomError(
                FILES_TOO_LARGE, f"files exceed {MAX_FILES_TOTAL_BYTES} bytes in total")
        names = set(files)
        for name in names:
            parts = name.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in names:
                    raise PydanticCustomError(
                        FILE_INSIDE_FILE,
                        f"file {name!r} is inside file {'/'.join(parts[:i])!r}")
        return files


def _document_output_encoding(schema: dict[str, Any]) -> None:
    """The API's text form adds ``encoding`` to a result (service/render.py); a result
    without it is in base64."""
    schema["properties"]["encoding"] = {
        "type": "string", "enum": ["base64", "text"],
        "description": "With encoding=text: how this result's stdout and stderr are "
                       "written (`base64` when one of them is not valid UTF-8)",
    }


class RunResult(BaseModel):
    """What one run did. Bytes are standard base64 in JSON."""

    model_config = ConfigDict(json_schema_extra=_document_output_encoding)

    status: RunStatus
    trap_kind: TrapKind | None = None
    exit_code: int | None = None
    stdout: OutputBytes = b""
    stderr: OutputBytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    fuel_used: int = 0
    wall_time_s: float = 0.0
    memory_peak_bytes: int = 0
    message: str | None = Field(default=None, description="Trap, link or validation message")
    compile_output: str | None = Field(
        default=None, description="Source jobs: the compiler's messages when compiling failed"
    )
    compile_cached: bool | None = Field(
        default=None, description="Source jobs: the module came from the compile cache"
    )
    compile_time_s: float | None = Field(
        default=None,
        description="Seconds spent compiling for this job (source compile and machine code; "
        "0 when both came from caches), charged to the job like its run time",
    )

    @property
    def succeeded(self) -> bool:
        return self.status is RunStatus.OK


class JobState(StrEnum):
    """A job's life: queued → running → finished | failed | cancelled (terminal)."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


MAX_COMPILER_FLAGS: Final = 16
MAX_BATCH: Final = 100  # jobs per batch submission, ids per multi-get


_INPUTS: Final = ("wasm_base64", "wat", "source", "language")


def _submission_schema(schema: dict[str, Any]) -> None:
    """State the model's rules in its JSON Schema: one of three shapes; inputs are strings
    when given (never null)."""
    for name in _INPUTS:
        prop = schema["properties"][name]
        prop.pop("anyOf", None)
        prop.pop("default", None)
        prop["type"] = "string"

    def others(*names: str) -> dict[str, Any]:
        return {"not": {"anyOf": [{"required": [n]} for n in names]}}

    module_only = {"properties": {"compiler_flags": {"maxItems": 0}}}
    schema["oneOf"] = [
        {"required": ["wasm_base64"], **others("wat", "source", "language"), **module_only},
        {"required": ["wat"], **others("wasm_base64", "source", "language"), **module_only},
        {"required": ["source", "language"], **others("wasm_base64", "wat")},
    ]


class JobSubmission(BaseModel):
    """What a tenant submits: exactly one of a module (base64 wasm or WAT) or source code."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_submission_schema)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in _INPUTS:
                if name in data and data[name] is None:
                    raise ValueError(f"{name} may not be null: leave it out")
        return data

    wasm_base64: str | None = Field(
        default=None, description="A .wasm binary or component, in standard base64",
        json_schema_extra={"format": "byte", "contentEncoding": "base64",
                           "pattern": BASE64_PATTERN},
    )
    wat: str | None = Field(default=None, description="WebAssembly text")
    language: str | None = Field(default=None, description="Language id (see /v1/languages)")
    source: str | None = Field(default=None, description="Source code in `language`")
    compiler_flags: list[str] = Field(
        default_factory=list, max_length=MAX_COMPILER_FLAGS,
        description="Extra compiler flags, each matching the language's allow-list",
    )
    limits: Limits = Field(default_factory=Limits)
    grants: Grants = Field(default_factory=Grants)
    callback_url: str | None = Field(
        default=None, max_length=MAX_CALLBACK_URL_LENGTH,
        description="http(s) URL that receives the job's record (POST, JSON, outputs in "
        "base64) once it ends; only public addresses unless the operator allowed more; "
        "each attempt is recorded in the record's `callback`",
        # documented (the service checks it, with a clearer message than a pattern's)
        json_schema_extra={"format": "uri", "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$"},
    )

    @model_validator(mode="after")
    def _one_input(self) -> JobSubmission:
        given = [n for n in ("wasm_base64", "wat", "source") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of wasm_base64, wat, or source (with language)")
        if (self.source is None) != (self.language is None):
            raise ValueError("source and language go together")
        if self.compiler_flags and self.source is None:
            raise ValueError("compiler_flags apply to source jobs only")
        return self


class JobSpec(BaseModel):
    """A job as workers see it: module bytes are referenced by hash, stored once."""

    model_config = ConfigDict(extra="forbid")

    module_sha256: str | None = None
    language: str | None = None
    source: str | None = None
    compiler_flags: list[str] = Field(default_factory=list)
    limits: Limits
    grants: Grants


class CallbackAttempt(BaseModel):
    """One attempt to deliver a job's callback."""

    at: Timestamp
    outcome: Literal["delivered", "failed", "refused"] = Field(
        description="refused: the URL or its address is not allowed, or the receiver "
        "redirected (never retried); failed: retried while attempts remain")
    status_code: int | None = None
    address: str | None = Field(default=None, description="The address connected to")
    detail: str | None = None


class CallbackStatus(BaseModel):
    """Where a job's result goes when it ends, and how delivering it went."""

    url: str
    state: Literal["pending", "delivered", "failed", "refused"]
    attempts: list[CallbackAttempt] = Field(default_factory=list)


class JobRecord(BaseModel):
    """The authoritative record of a job, as the API returns it."""

    id: str
    state: JobState
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    attempts: int = 0
    result: RunResult | None = None
    error: str | None = Field(default=None, description="Why a job failed outside its run")
    callback: CallbackStatus | None = None


class JobAccepted(BaseModel):
    """The answer to a submission that does not wait."""

    id: str
    state: JobState


class BatchSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSubmission] = Field(min_length=1, max_length=MAX_BATCH)


class BatchAccepted(BaseModel):
    ids: list[str] = Field(description="Job ids, in the order submitted")


class JobList(BaseModel):
    jobs: list[JobRecord | None] = Field(
        description="With ids: in the order asked, null if unknown; else newest first")
    next_cursor: str | None = Field(
        default=None, description="Listing: pass as `cursor` for the next page (null: none)")
