"""Turn a tenant's submission into a JobSpec: decode, validate and size-check the module."""

from __future__ import annotations

from functools import lru_cache

import wasmtime

from sandboxes.compilation.entry import entry_problem
from sandboxes.compilation.modules import ModuleKind, decode_module
from sandboxes.errors import SandboxError
from sandboxes.languages.registry import LANGUAGES
from sandboxes.runtime.engine import EngineSpec
from sandboxes.schema import LIMIT_BOUNDS, JobSpec, JobSubmission, decode_base64
from service.http_errors import Problem
from tenancy.models import Caller


@lru_cache(maxsize=1)
def _validation_engine() -> wasmtime.Engine:
    return EngineSpec(int(LIMIT_BOUNDS["stack_bytes"].default)).build()


def _check_unicode(sub: JobSubmission) -> None:
    """JSON may carry lone surrogates (``"\\ud800"``), which no UTF-8 consumer (the WAT
    parser, the job store, the guest's argv and environment) accepts: a 422, not a 500."""
    texts: list[tuple[tuple[str, ...], str | None]] = [
        (("wat",), sub.wat), (("language",), sub.language), (("source",), sub.source),
    ]
    texts += [(("grants", "args", str(i)), arg) for i, arg in enumerate(sub.grants.args)]
    for name, value in sub.grants.env.items():
        texts += [(("grants", "env"), name), (("grants", "env", name), value)]
    texts += [(("grants", "files"), name) for name in sub.grants.files]
    for loc, text in texts:
        if text is None:
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            where = ".".join(("body", *loc))
            msg = "contains a lone surrogate: not valid Unicode text"
            raise Problem(
                422, "validation-error", "The request is invalid", f"{where}: {msg}",
                errors=[{"loc": ["body", *loc], "msg": msg}],
            ) from None


def to_spec(sub: JobSubmission) -> tuple[JobSpec, tuple[str, bytes] | None]:
    """The spec to queue and, for module jobs, (sha256, bytes) to store once."""
    _check_unicode(sub)
    if sub.source is not None:
        language = LANGUAGES.get(sub.language or "")
        if language is None:
            raise Problem(
                422, "unknown-language", "Unknown language",
                f"{sub.language!r} is not a supported language; see GET /v1/languages",
            )
        problem = language.check_flags(sub.compiler_flags)
        if problem is not None:
            raise Problem(422, "compiler-flag-not-allowed", "Compiler flag not allowed", problem)
        problem = language.check_files(list(sub.grants.files))
        if problem is not None:
            raise Problem(422, "reserved-path", "File name is reserved", problem)
        spec = JobSpec(language=sub.language, source=sub.source, limits=language.limits(sub.limits),
                       grants=sub.grants, compiler_flags=sub.compiler_flags)
        return spec, None
    if sub.wasm_base64 is not None:
        try:
            raw: bytes | str = decode_base64(sub.wasm_base64)
        except ValueError as err:
            raise Problem(
                422, "invalid-base64", "wasm_base64 is not valid base64",
                f"body.wasm_base64: {err}",
                errors=[{"loc": ["body", "wasm_base64"], "msg": str(err)}],
            ) from None
    else:
        assert sub.wat is not None
        raw = sub.wat
    try:
        module = decode_module(raw, sub.limits.module_bytes)
        if module.kind is ModuleKind.CORE:
            wasmtime.Module.validate(_validation_engine(), module.wasm)
    except SandboxError as err:
        raise Problem(422, "invalid-module", "The module is invalid", err.message) from None
    except wasmtime.WasmtimeError as err:
        raise Problem(422, "invalid-module", "The module is invalid", str(err)) from None
    problem = entry_problem(module)
    if problem is not None:  # valid, but no worker could start it
        raise Problem(422, "no-entry-point", "The module cannot be run", problem)
    spec = JobSpec(module_sha256=module.sha256, limits=sub.limits, grants=sub.grants)
    return spec, (module.sha256, module.wasm)


def within_ceilings(sub: JobSubmission, spec: JobSpec, caller: Caller) -> JobSpec:
    """The spec under the tenant's per-job ceilings: a limit the caller left to its default
    is lowered to the ceiling; one the caller asked for above it is a 403 (waiting will not
    help), as is a language the tenant may not use."""
    ceilings = caller.quotas.ceilings
    if spec.language is not None and ceilings.languages is not None \
            and spec.language not in ceilings.languages:
        raise Problem(403, "language-not-allowed", "The language is not allowed",
                      f"tenant {caller.tenant!r} may submit {', '.join(ceilings.languages)}"
                      f" only, not {spec.language}")
    asked = sub.limits.model_fields_set
    lowered: dict[str, object] = {}
    for name, ceiling in ceilings.job_limits().items():
        value = getattr(spec.limits, name)
        if value <= ceiling:
            continue
        if name in asked:
            raise Problem(403, "over-ceiling", "A limit is over the tenant's ceiling",
                          f"limits.{name} must be at most {ceiling:g} for tenant "
                          f"{caller.tenant!r}", limit=name, ceiling=ceiling)
        lowered[name] = ceiling
    if not lowered:
        return spec
    return spec.model_copy(update={"limits": spec.limits.model_copy(update=lowered)})


def language_unavailable(language: str | None, served: set[str] | None) -> Problem | None:
    """503 for a source job that no live worker can compile (it would wait in the queue
    for nothing): the workers up run locked down, without the native compile jail that
    language needs. Unknown (no worker up yet): it is queued and waits for one."""
    if language is None or served is None or language in served \
            or language not in LANGUAGES:  # an unknown one is the 422 to_spec gives
        return None
    return Problem(503, "language-unavailable", "No worker up can run this language",
                   f"no worker up now can compile {language} (it compiles natively, in "
                   "the bwrap jail, which the workers up cannot create); languages served "
                   f"now: {', '.join(sorted(served))}", headers={"Retry-After": "30"})
