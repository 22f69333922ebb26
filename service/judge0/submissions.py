"""Judge0 submissions onto Warden jobs and back: field names, units, limits and statuses.

A Judge0 submission becomes an ordinary Warden source job (its limits within Warden's and
the tenant's bounds); what only Judge0 has (``expected_output``, the language id) is kept
beside the job record. The token is the job id written as a UUID.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import shlex
import uuid
import zipfile
from datetime import UTC
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError

from sandboxes.languages.registry import LANGUAGES, Language
from sandboxes.schema import (
    LIMIT_BOUNDS,
    MAX_FILES,
    Grants,
    JobRecord,
    JobSpec,
    JobState,
    JobSubmission,
    KiB,
    Limits,
    MiB,
    RunResult,
    RunStatus,
    TrapKind,
)
from service.judge0.catalog import MAX_EXTRACT_BYTES, STATUSES, language_name
from workers.store import PREFIX, record_from_fields

FIELD: Final = "judge0"  # the job record's field with the Judge0-only attributes
DEFAULT_FIELDS: Final = ("token", "time", "memory", "stdout", "stderr", "compile_output",
                         "message", "status")
_DESCRIPTIONS: Final = dict(STATUSES)


class FieldsRefusedError(Exception):
    """Judge0's 422: ``{"field": ["message", ...]}``."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(str(errors))
        self.errors = errors


class Judge0Submission(BaseModel):
    """The body of ``POST /submissions`` (unknown attributes are ignored, as Judge0 does)."""

    model_config = ConfigDict(extra="ignore")

    source_code: str | None = None
    language_id: int | None = None
    compiler_options: str | None = None
    command_line_arguments: str | None = None
    stdin: str | None = None
    expected_output: str | None = None
    cpu_time_limit: float | None = None
    cpu_extra_time: float | None = None
    wall_time_limit: float | None = None
    memory_limit: float | None = None
    stack_limit: int | None = None
    max_processes_and_or_threads: int | None = None
    enable_per_process_and_thread_time_limit: bool | None = None
    enable_per_process_and_thread_memory_limit: bool | None = None
    max_file_size: int | None = None
    redirect_stderr_to_stdout: bool | None = None
    enable_network: bool | None = None
    number_of_runs: int | None = None
    additional_files: str | None = None
    callback_url: str | None = None


def by_judge0_id(language_id: int) -> Language | None:
    return next((lang for lang in LANGUAGES.values() if lang.judge0_id == language_id), None)


def _text(value: str | None, base64_encoded: bool, name: str,
          errors: dict[str, list[str]]) -> str | None:
    if value is None or not base64_encoded:
        return value
    try:
        return base64.b64decode(value, validate=False).decode("utf-8")
    except (binascii.Error, ValueError):
        errors.setdefault(name, []).append("is not valid base64 of UTF-8 text")
        return None


def _within(name: str, value: float | None, low: float, high: float,
            errors: dict[str, list[str]]) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        errors.setdefault(name, []).append("must be a finite number")
    elif value < low:
        errors.setdefault(name, []).append(f"must be greater than or equal to {low:g}")
    elif value > high:
        errors.setdefault(name, []).append(f"must be less than or equal to {high:g}")


def to_job(body: Judge0Submission, base64_encoded: bool, fuel_per_second: int,
           ) -> tuple[JobSubmission, dict[str, Any]]:
    """The Warden job for a Judge0 submission, and the Judge0-only attributes to keep;
    FieldsRefusedError (Judge0's 422) for what Judge0 would refuse."""
    errors: dict[str, list[str]] = {}
    source = _text(body.source_code, base64_encoded, "source_code", errors)
    stdin = _text(body.stdin, base64_encoded, "stdin", errors)
    expected = _text(body.expected_output, base64_encoded, "expected_output", errors)
    if not source:
        errors.setdefault("source_code", []).append("can't be blank")
    language = by_judge0_id(body.language_id) if body.language_id is not None else None
    if body.language_id is None:
        errors.setdefault("language_id", []).append("can't be blank")
    elif language is None:
        errors.setdefault("language_id", []).append(
            f"language with id {body.language_id} doesn't exist")
    wall, memory = LIMIT_BOUNDS["wall_time_s"], LIMIT_BOUNDS["memory_bytes"]
    stack, out = LIMIT_BOUNDS["stack_bytes"], LIMIT_BOUNDS["stdout_bytes"]
    max_cpu = min(LIMIT_BOUNDS["fuel"].maximum / fuel_per_second, wall.maximum)
    _within("cpu_time_limit", body.cpu_time_limit, 0.001, max_cpu, errors)
    _within("cpu_extra_time", body.cpu_extra_time, 0, 5, errors)
    _within("wall_time_limit", body.wall_time_limit, wall.minimum, wall.maximum, errors)
    _within("memory_limit", body.memory_limit, memory.minimum / KiB, memory.maximum / KiB,
            errors)
    _within("stack_limit", body.stack_limit, 0, stack.maximum / KiB, errors)
    _within("max_file_size", body.max_file_size, 0, out.maximum / KiB, errors)
    _within("number_of_runs", body.number_of_runs, 1, 1, errors)
    _within("max_processes_and_or_threads", body.max_processes_and_or_threads, 1, 1000,
            errors)
    if body.enable_network:
        errors.setdefault("enable_network", []).append("enabling network is not allowed")
    files = _additional_files(body.additional_files, errors)
    try:
        args = shlex.split(body.command_line_arguments or "")
        flags = shlex.split(body.compiler_options or "")
    except ValueError as err:
        errors.setdefault("command_line_arguments", []).append(str(err))
        args, flags = [], []
    if language is not None and files and (reserved := language.check_files(list(files))):
        errors.setdefault("additional_files", []).append(reserved)
    if errors:
        raise FieldsRefusedError(errors)
    assert language is not None and source is not None
    cpu = body.cpu_time_limit if body.cpu_time_limit is not None else 5.0
    extra = body.cpu_extra_time if body.cpu_extra_time is not None else 1.0
    limits: dict[str, Any] = {
        "fuel": max(int((cpu + extra) * fuel_per_second), int(LIMIT_BOUNDS["fuel"].minimum)),
        "wall_time_s": body.wall_time_limit if body.wall_time_limit is not None
        else max(wall.default, cpu + extra),
    }
    if body.memory_limit is not None:
        limits["memory_bytes"] = int(body.memory_limit * KiB)
    if body.stack_limit:
        limits["stack_bytes"] = max(int(body.stack_limit * KiB), int(stack.minimum))
    if body.max_file_size is not None:
        limits["stdout_bytes"] = int(body.max_file_size * KiB)
    try:
        job = JobSubmission(language=language.id, source=source, compiler_flags=flags,
                            limits=Limits(**limits),
                            grants=Grants(args=args, stdin=(stdin or "").encode(), files=files))
    except ValidationError as err:
        raise FieldsRefusedError(_field_errors(err)) from None
    kept = {"language_id": language.judge0_id, "expected_output": expected,
            "redirect_stderr_to_stdout": bool(body.redirect_stderr_to_stdout),
            "cpu_time_limit": cpu, "cpu_extra_time": extra,
            "wall_time_limit": limits["wall_time_s"], "fuel_per_second": fuel_per_second,
            "callback_url": body.callback_url or None}
    return job, kept


_GRANT_FIELDS: Final = {"args": "command_line_arguments", "stdin": "stdin",
                         "files": "additional_files"}


def _field_errors(err: ValidationError) -> dict[str, list[str]]:
    """Warden's own validation of the job, in Judge0's field names."""
    errors: dict[str, list[str]] = {}
    for error in err.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        name = next((_GRANT_FIELDS[p] for p in loc if p in _GRANT_FIELDS), loc[0] if loc
                    else "base")
        errors.setdefault(name, []).append(str(error["msg"]))
    return errors


def _additional_files(encoded: str | None, errors: dict[str, list[str]]) -> dict[str, bytes]:
    """Judge0's ``additional_files``: a base64 zip whose files sit beside the program. Read
    in memory with a bound on every member (nothing is written to the host); directories
    are implied by the names."""
    if not encoded:
        return {}
    problems = errors.setdefault("additional_files", [])
    files: dict[str, bytes] = {}
    try:
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(encoded, validate=False)))
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > MAX_FILES:
            problems.append(f"the archive holds more than {MAX_FILES} files")
        elif any(info.flag_bits & 1 for info in members):
            problems.append("the archive is encrypted")
        elif sum(info.file_size for info in members) > MAX_EXTRACT_BYTES:
            problems.append(f"extracted files are larger than {MAX_EXTRACT_BYTES // MiB} MiB")
        for info in members if not problems else []:
            name = info.filename.removeprefix("./")
            with archive.open(info) as member:
                data = member.read(MAX_EXTRACT_BYTES + 1)
            if len(data) != info.file_size:
                problems.append(f"{name!r} is not the size its zip entry says")
            elif name in files:
                problems.append(f"{name!r} is in the archive twice")
            files[name] = data
    except Exception as err:  # a zip can fail in many ways (zlib, lzma, struct, ...)
        problems.append(f"is not a valid base64-encoded zip archive ({type(err).__name__}: "
                        f"{err})"[:300])
    if problems:
        return {}
    del errors["additional_files"]
    return files


def listing_key(tenant: str) -> str:
    """The tenant's Judge0 submissions by creation time (GET /submissions pages it)."""
    return f"{PREFIX}judge0:{tenant}"


def token_of(job_id: str) -> str:
    return str(uuid.UUID(hex=job_id))


def job_id_of(token: str) -> str | None:
    try:
        return uuid.UUID(token.strip()).hex
    except ValueError:
        return None


_TRAP_STATUS: Final = {
    TrapKind.MEMORY_OUT_OF_BOUNDS: 7, TrapKind.TABLE_OUT_OF_BOUNDS: 7,
    TrapKind.STACK_OVERFLOW: 7, TrapKind.INDIRECT_CALL_TO_NULL: 7,
    TrapKind.INTEGER_DIVISION_BY_ZERO: 9, TrapKind.INTEGER_OVERFLOW: 9,
    TrapKind.UNREACHABLE: 10,
}
_RUN_STATUS: Final = {
    RunStatus.NONZERO_EXIT: 11, RunStatus.FUEL_EXHAUSTED: 5, RunStatus.WALL_TIMEOUT: 5,
    RunStatus.MEMORY_LIMIT: 12, RunStatus.OUTPUT_LIMIT: 8, RunStatus.SCRATCH_LIMIT: 8,
    RunStatus.COMPILE_ERROR: 6, RunStatus.INVALID_MODULE: 14, RunStatus.LINK_ERROR: 14,
    RunStatus.UNSUPPORTED: 14, RunStatus.CANCELLED: 13, RunStatus.INTERNAL_ERROR: 13,
}


def status_id(record: JobRecord, expected: str | None) -> int:
    """Warden's outcome as one of Judge0's 14 status ids (never another)."""
    if record.state is JobState.QUEUED:
        return 1
    if record.state is JobState.RUNNING:
        return 2
    result = record.result
    if result is None:
        return 13
    if result.status is RunStatus.OK:
        if expected is None:
            return 3
        return 3 if _same_output(result.stdout, expected) else 4
    if result.status is RunStatus.TRAP:
        return _TRAP_STATUS.get(result.trap_kind or TrapKind.OTHER, 12)
    return _RUN_STATUS.get(result.status, 13)


def _same_output(stdout: bytes, expected: str) -> bool:
    """Judge0's comparison: both with trailing whitespace removed."""
    return stdout.rstrip() == expected.encode().rstrip()


def _message(record: JobRecord, status: int) -> str | None:
    result = record.result
    if result is None:
        return record.error
    if result.status is RunStatus.NONZERO_EXIT and result.exit_code is not None:
        return f"Exited with error status {result.exit_code}"
    if result.status is RunStatus.WALL_TIMEOUT:
        return "Time limit exceeded (wall clock)"
    if result.status is RunStatus.MEMORY_LIMIT:
        return "Memory limit exceeded"
    if status in (3, 4):
        return None
    return result.message


class NotUtf8Error(Exception):
    pass


def view(record: JobRecord, kept: dict[str, Any], fields: tuple[str, ...] | None,
         base64_encoded: bool, spec: JobSpec | None) -> dict[str, Any]:
    """A job as Judge0 shows a submission (``fields``: None for all)."""
    result: RunResult | None = record.result
    status = status_id(record, kept.get("expected_output"))
    stdout = result.stdout if result else None
    stderr = result.stderr if result else None
    if result is not None and kept.get("redirect_stderr_to_stdout"):
        stdout, stderr = (stdout or b"") + (stderr or b""), None
    compile_output = result.compile_output.encode() if result and result.compile_output \
        else None
    ran = result is not None and result.status not in (RunStatus.COMPILE_ERROR,)

    def encoded(data: bytes | None) -> str | None:
        if data is None or (not data and result is None):
            return None
        if base64_encoded:
            return base64.b64encode(data).decode()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise NotUtf8Error from None

    expected = kept.get("expected_output")
    message = _message(record, status)
    limits = spec.limits if spec else Limits()
    language = by_judge0_id(kept.get("language_id") or -1)
    everything: dict[str, Any] = {
        "token": token_of(record.id),
        "source_code": encoded(((spec.source if spec else None) or "").encode()),
        "language_id": kept.get("language_id"),
        "language": {"id": language.judge0_id, "name": language_name(language)}
        if language else None,
        "stdin": encoded(spec.grants.stdin if spec else b""),
        "expected_output": encoded(expected.encode()) if expected is not None else None,
        "stdout": encoded(stdout) if ran else None,
        "stderr": encoded(stderr) if ran else None,
        "compile_output": encoded(compile_output),
        "message": encoded(message.encode()) if message else None,
        "exit_code": result.exit_code if result and ran else None,
        "exit_signal": None,
        "status": {"id": status, "description": _DESCRIPTIONS[status]},
        "status_id": status,
        "created_at": _time(record.created_at),
        "finished_at": _time(record.finished_at),
        # CPU time as the judge counts it: fuel over the calibrated rate
        "time": f"{result.fuel_used / kept['fuel_per_second']:.3f}" if result and ran
        else None,
        "wall_time": f"{result.wall_time_s:.3f}" if result and ran else None,
        "memory": result.memory_peak_bytes // KiB if result and ran else None,
        "number_of_runs": 1,
        "cpu_time_limit": f"{kept.get('cpu_time_limit', 5.0):g}",
        "cpu_extra_time": f"{kept.get('cpu_extra_time', 1.0):g}",
        "wall_time_limit": f"{kept.get('wall_time_limit', 10.0):g}",
        "memory_limit": limits.memory_bytes // KiB,
        "stack_limit": limits.stack_bytes // KiB,
        "max_processes_and_or_threads": 1,
        "enable_per_process_and_thread_time_limit": False,
        "enable_per_process_and_thread_memory_limit": False,
        "max_file_size": limits.stdout_bytes // KiB,
        "compiler_options": shlex.join(spec.compiler_flags) if spec and spec.compiler_flags
        else None,
        "command_line_arguments": shlex.join(spec.grants.args) if spec and spec.grants.args
        else None,
        "redirect_stderr_to_stdout": bool(kept.get("redirect_stderr_to_stdout")),
        "callback_url": kept.get("callback_url"),
        "additional_files": None,  # kept as the job's files, not as the zip it came in
        "enable_network": False,
    }
    if fields is None:
        return everything
    return {name: everything[name] for name in fields}


def view_of_fields(job_id: str, raw: dict[bytes, bytes], fields: tuple[str, ...] | None,
                   base64_encoded: bool, fuel_per_second: int,
                   tenant: str | None = None) -> dict[str, Any] | None:
    """A job's hash as Judge0 shows the submission; None if there is no such submission
    (gone, ``tenant``'s other than its owner, or a job that did not come through Judge0).
    NotUtf8Error as ``view``."""
    record = record_from_fields(job_id, raw, tenant)
    if record is None or FIELD.encode() not in raw:
        return None
    kept = json.loads(raw[FIELD.encode()])
    kept.setdefault("fuel_per_second", fuel_per_second)
    spec = JobSpec.model_validate_json(raw[b"spec"]) if b"spec" in raw else None
    return view(record, kept, fields, base64_encoded, spec)


AVAILABLE_FIELDS: Final = (
    "source_code", "language_id", "stdin", "expected_output", "stdout", "status_id",
    "created_at", "finished_at", "time", "memory", "stderr", "token", "number_of_runs",
    "cpu_time_limit", "cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit",
    "max_processes_and_or_threads", "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit", "max_file_size", "compile_output",
    "exit_code", "exit_signal", "message", "wall_time", "compiler_options",
    "command_line_arguments", "redirect_stderr_to_stdout", "callback_url",
    "additional_files", "enable_network", "status", "language",
)


class InvalidFieldsError(Exception):
    """Judge0's 400 ``invalid fields: [a, b]``."""


def _time(value: Any) -> str | None:
    """Judge0's timestamp format (the SDK parses exactly ``%Y-%m-%dT%H:%M:%S.%fZ``)."""
    if value is None:
        return None
    return str(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def parse_fields(text: str | None) -> tuple[str, ...] | None:
    """Judge0's ``fields``: names (in order), ``*`` for all (None), the default set when
    empty; an unknown name is refused (InvalidFieldsError)."""
    names = [f.strip() for f in (text or "").split(",") if f.strip()]
    invalid = [n for n in names if n != "*" and n not in AVAILABLE_FIELDS]
    if invalid:
        raise InvalidFieldsError(f"invalid fields: [{', '.join(invalid)}]")
    if "*" in names:
        return None
    return tuple(dict.fromkeys(names)) or DEFAULT_FIELDS
