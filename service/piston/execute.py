"""Piston's ``/execute`` body onto a Warden source job, and a finished job back onto
Piston's ``compile``/``run`` stage objects.

Piston's limits are milliseconds and bytes: ``run_timeout`` is the wall clock,
``run_cpu_time`` becomes fuel at the judge's calibrated rate (the same every run, unlike
CPU time), ``run_memory_limit`` the guest's memory. ``compile_timeout`` bounds the compile;
``compile_memory_limit`` is range-checked only (Warden's compiler limits are its own).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Final

from pydantic import ValidationError

from sandboxes.languages.registry import Language
from sandboxes.schema import (
    LIMIT_BOUNDS,
    MAX_FILES,
    Grants,
    JobRecord,
    JobSubmission,
    Limits,
    RunResult,
    RunStatus,
    TrapKind,
)
from service.piston import catalog

DEFAULT_RUN_MS: Final = 3000  # Piston's defaults: 3 s to run, 10 s to compile
DEFAULT_COMPILE_MS: Final = 10_000


class PistonError(Exception):
    """Piston's error: ``{"message": "..."}`` with a 4xx/5xx status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _maxima(fuel_per_second: int, wait_s: float) -> dict[str, float]:
    """The configured limit of each Piston constraint, in Piston's units. ``wait_s``: the
    longest an execute request waits (a run and its compile must end within it)."""
    wall, compile_s = LIMIT_BOUNDS["wall_time_s"], LIMIT_BOUNDS["compile_time_s"]
    memory = LIMIT_BOUNDS["memory_bytes"]
    run_max = min(wall.maximum, wait_s / 2)
    compile_max = min(compile_s.maximum, wait_s / 2)
    return {
        "run_timeout": run_max * 1000, "compile_timeout": compile_max * 1000,
        "run_cpu_time": min(LIMIT_BOUNDS["fuel"].maximum / fuel_per_second, run_max) * 1000,
        "compile_cpu_time": compile_max * 1000,
        "run_memory_limit": memory.maximum, "compile_memory_limit": memory.maximum,
    }


def _constraints(body: dict[str, Any], fuel_per_second: int,
                 wait_s: float) -> dict[str, float]:
    """The limits given, checked as Piston checks them (0 or absent: the default)."""
    given: dict[str, float] = {}
    for name, maximum in _maxima(fuel_per_second, wait_s).items():
        value = body.get(name)
        if value is None or value == 0:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise PistonError(400, f"If specified, {name} must be a number")
        if name.endswith("memory_limit") and value == -1:
            continue  # Piston's "no limit": the language's default here
        if value > maximum:
            raise PistonError(400, f"{name} cannot exceed the configured limit of "
                                   f"{maximum:g}")
        if value < 0:
            raise PistonError(400, f"{name} must be non-negative")
        given[name] = float(value)
    return given


def _decode(file: dict[str, Any], index: int) -> bytes:
    encoding = file.get("encoding") or "utf8"
    content = file["content"]
    try:
        if encoding == "utf8":
            return str(content).encode("utf-8")
        if encoding == "base64":
            return base64.b64decode(content, validate=True)
        if encoding == "hex":
            return bytes.fromhex(content)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise PistonError(400, f"files[{index}].content is not valid {encoding}") from None
    raise PistonError(400, f"files[{index}].encoding must be one of utf8, base64, hex")


def to_job(body: Any, fuel_per_second: int, wait_s: float) -> tuple[JobSubmission, Language]:
    """The job for an ``/execute`` body; PistonError (400) with Piston's messages."""
    if not isinstance(body, dict):
        raise PistonError(400, "the request body must be a JSON object")
    language_name, selector, files = body.get("language"), body.get("version"), \
        body.get("files")
    if not language_name or not isinstance(language_name, str):
        raise PistonError(400, "language is required as a string")
    if not selector or not isinstance(selector, str):
        raise PistonError(400, "version is required as a string")
    if not files or not isinstance(files, list):
        raise PistonError(400, "files is required as an array")
    if len(files) > MAX_FILES + 1:
        raise PistonError(400, f"at most {MAX_FILES + 1} files")
    for i, file in enumerate(files):
        if not isinstance(file, dict) or not isinstance(file.get("content"), str):
            raise PistonError(400, f"files[{i}].content is required as a string")
        if not isinstance(file.get("name", ""), str | None):
            raise PistonError(400, f"files[{i}].name must be a string")
    language = catalog.find(language_name, selector)
    if language is None:
        raise PistonError(400, f"{language_name}-{selector} runtime is unknown")
    if not any((f.get("encoding") or "utf8") == "utf8" for f in files):
        raise PistonError(400, "files must include at least one utf8 encoded file")
    given = _constraints(body, fuel_per_second, wait_s)
    stdin, args = body.get("stdin") or "", body.get("args") or []
    if not isinstance(stdin, str):
        raise PistonError(400, "stdin must be a string")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise PistonError(400, "args must be an array of strings")
    main = next(i for i, f in enumerate(files) if (f.get("encoding") or "utf8") == "utf8")
    extra: dict[str, bytes] = {}
    for i, file in enumerate(files):
        name = str(file.get("name") or f"file{i}").removeprefix("./")
        if i == main:
            continue
        if name in extra:
            raise PistonError(400, f"files[{i}].name {name!r} is given twice")
        extra[name] = _decode(file, i)
    reserved = language.check_files(list(extra))
    if reserved is not None:
        raise PistonError(400, reserved)
    run_s = given.get("run_timeout", DEFAULT_RUN_MS) / 1000
    cpu_s = given.get("run_cpu_time", DEFAULT_RUN_MS) / 1000
    limits: dict[str, Any] = {
        "wall_time_s": max(run_s, LIMIT_BOUNDS["wall_time_s"].minimum),
        "fuel": max(int(cpu_s * fuel_per_second), int(LIMIT_BOUNDS["fuel"].minimum)),
        "compile_time_s": max(given.get("compile_timeout", DEFAULT_COMPILE_MS) / 1000,
                              LIMIT_BOUNDS["compile_time_s"].minimum),
    }
    if "run_memory_limit" in given:
        limits["memory_bytes"] = max(int(given["run_memory_limit"]),
                                     int(LIMIT_BOUNDS["memory_bytes"].minimum))
    try:
        job = JobSubmission(language=language.id, source=files[main]["content"],
                            limits=Limits(**limits),
                            grants=Grants(args=args, stdin=stdin.encode(), files=extra))
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PistonError(400, f"{where}: {first['msg']}" if where else first["msg"]) from None
    return job, language


_SIGNALS: Final = {
    TrapKind.MEMORY_OUT_OF_BOUNDS: "SIGSEGV", TrapKind.TABLE_OUT_OF_BOUNDS: "SIGSEGV",
    TrapKind.STACK_OVERFLOW: "SIGSEGV", TrapKind.INDIRECT_CALL_TO_NULL: "SIGSEGV",
    TrapKind.INTEGER_DIVISION_BY_ZERO: "SIGFPE", TrapKind.INTEGER_OVERFLOW: "SIGFPE",
    TrapKind.UNREACHABLE: "SIGABRT",
}


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _run_stage(result: RunResult, fuel_per_second: int) -> dict[str, Any]:
    """Piston's run stage: ``code`` or ``signal`` (one is null), isolate's status letters
    (RE, SG, TO, OL, EL) and a message, CPU/wall time in ms and memory in bytes."""
    stdout, stderr = _text(result.stdout), _text(result.stderr)
    code: int | None = result.exit_code if result.exit_code is not None else None
    signal: str | None = None
    status: str | None = None
    message: str | None = None
    kind = result.status
    if kind is RunStatus.OK:
        code = 0
    elif kind is RunStatus.NONZERO_EXIT:
        status, message = "RE", f"Exited with error status {result.exit_code}"
    elif kind in (RunStatus.FUEL_EXHAUSTED, RunStatus.WALL_TIMEOUT):
        code, signal, status = None, "SIGKILL", "TO"
        message = "Time limit exceeded" + (" (wall clock)"
                                           if kind is RunStatus.WALL_TIMEOUT else "")
    elif kind in (RunStatus.OUTPUT_LIMIT, RunStatus.SCRATCH_LIMIT):
        code, signal = None, "SIGKILL"
        status = "EL" if result.stderr_truncated and not result.stdout_truncated else "OL"
        message = "stderr length exceeded" if status == "EL" else "stdout length exceeded"
    elif kind is RunStatus.MEMORY_LIMIT:
        code, signal, status, message = None, "SIGKILL", "SG", "Memory limit exceeded"
    elif kind is RunStatus.TRAP:
        code, status = None, "SG"
        signal = _SIGNALS.get(result.trap_kind or TrapKind.OTHER, "SIGILL")
        message = result.message
    else:
        code, status, message = None, "XX", result.message
    return {"stdout": stdout, "stderr": stderr, "output": stdout + stderr, "code": code,
            "signal": signal, "message": message, "status": status,
            "cpu_time": round(result.fuel_used / fuel_per_second * 1000),
            "wall_time": round(result.wall_time_s * 1000),
            "memory": result.memory_peak_bytes}


def _compile_stage(result: RunResult) -> dict[str, Any]:
    failed = result.status is RunStatus.COMPILE_ERROR
    output = result.compile_output or ""
    return {"stdout": "", "stderr": output, "output": output, "code": 1 if failed else 0,
            "signal": None, "message": "Compilation failed" if failed else None,
            "status": "RE" if failed else None, "cpu_time": None,
            "wall_time": round((result.compile_time_s or 0) * 1000), "memory": None}


def response(record: JobRecord, language: Language, fuel_per_second: int) -> dict[str, Any]:
    """Piston's answer: ``run`` always (a compile error's stage stands in for it, as in
    Piston), ``compile`` for compiled languages."""
    result = record.result
    if result is None or result.status in (RunStatus.INTERNAL_ERROR, RunStatus.CANCELLED):
        raise PistonError(500, (result.message if result else None) or record.error
                          or "the job did not run")
    if result.status in (RunStatus.UNSUPPORTED,):
        raise PistonError(400, result.message or f"{language.id} is not served here")
    answer: dict[str, Any] = {"language": catalog.piston_name(language),
                              "version": catalog.version(language)}
    if not language.interpreted:
        answer["compile"] = _compile_stage(result)
    answer["run"] = answer["compile"] if result.status is RunStatus.COMPILE_ERROR \
        else _run_stage(result, fuel_per_second)
    return answer
