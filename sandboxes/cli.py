"""The ``warden`` command line. Subcommands of later parts (up, api, worker, submit,
languages) register on the same Typer app."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from sandboxes.languages.registry import LANGUAGES, get_language
from sandboxes.schema import Grants, Limits, RunResult, RunStatus, ScratchGrant
from sandboxes.units import format_size

app = typer.Typer(
    help="Warden: run untrusted code safely on WebAssembly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """Warden: run untrusted code safely on WebAssembly."""


# Exit codes of `warden run` beyond the guest's own exit code.
EXIT_LIMIT = 124  # a limit or trap ended the guest
EXIT_INVALID = 125  # the module or the options were rejected
EXIT_CODE_MAX = 255  # guest exit codes above this exit with it


def fail(message: str) -> typer.Exit:
    typer.echo(f"warden: {message}", err=True)
    return typer.Exit(EXIT_INVALID)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"{what} {item!r} must look like NAME=VALUE")
        out[key] = value
    return out


def read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None


@app.command()
def run(
    module: Annotated[Path, typer.Argument(
        help="A .wasm binary, .wat text, WASI P2 component, or source (.c .cpp .zig .rs .py .js)"
    )],
    lang: Annotated[
        str | None, typer.Option(help="Source language id (default: from the file suffix)")
    ] = None,
    flag: Annotated[
        list[str] | None, typer.Option(help="Allowed compiler flag, e.g. -O3 (repeatable)")
    ] = None,
    stdin: Annotated[
        Path | None, typer.Option(help="File whose bytes are the guest's stdin")
    ] = None,
    arg: Annotated[list[str] | None, typer.Option(help="Guest argument (repeatable)")] = None,
    env: Annotated[
        list[str] | None, typer.Option(help="Guest env var NAME=VALUE (repeatable)")
    ] = None,
    file: Annotated[
        list[str] | None, typer.Option(help="Read-only file NAME=PATH, visible at /NAME")
    ] = None,
    scratch: Annotated[
        str | None, typer.Option(help="Grant a writable /tmp with this quota, e.g. 16MiB")
    ] = None,
    fuel: Annotated[int | None, typer.Option(help="Fuel budget (~ wasm instructions)")] = None,
    memory: Annotated[str | None, typer.Option(help="Linear memory limit, e.g. 64MiB")] = None,
    timeout: Annotated[str | None, typer.Option(help="Wall-clock limit, e.g. 2s or 500ms")] = None,
    stack: Annotated[str | None, typer.Option(help="Wasm stack limit, e.g. 1MiB")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Run a WebAssembly module, or compile source in the jail and run it, under limits."""
    source = read(module, "module")
    language = lang or language_of(module)
    overrides: dict[str, object] = {
        k: v
        for k, v in {
            "fuel": fuel, "memory_bytes": memory, "wall_time_s": timeout, "stack_bytes": stack
        }.items()
        if v is not None
    }
    try:
        limits = Limits.model_validate(overrides)
        grants = Grants(
            args=arg or [],
            env=_pairs(env or [], "--env"),
            stdin=read(stdin, "stdin") if stdin else b"",
            files={
                name: read(Path(path), "file")
                for name, path in _pairs(file or [], "--file").items()
            },
            scratch=ScratchGrant(quota_bytes=scratch) if scratch else None,
        )
    except ValidationError as exc:
        raise fail(validation_text(exc)) from None
    from sandboxes.runtime.sandbox import Sandbox  # deferred: wasmtime import is not free

    if language is not None:
        from sandboxes.languages.source_runner import SourceRunner

        registered = get_language(language)
        if registered is not None:
            limits = registered.limits(limits)  # its defaults under the options given
        result = SourceRunner(Sandbox()).run(language, source, limits, grants, flag or [])
    else:
        result = Sandbox().run(source, limits, grants)
    if json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.buffer.write(result.stdout)
        sys.stderr.buffer.write(result.stderr)
        sys.stdout.flush()
        typer.echo(summary(result), err=True)
    raise typer.Exit(exit_code(result))


def language_of(path: Path) -> str | None:
    """The language whose source files end like ``path`` (None for modules)."""
    if path.suffix in (".wasm", ".wat"):
        return None
    for language in LANGUAGES.values():
        if Path(language.file_name).suffix == path.suffix:
            return language.id
    return None


@app.command()
def languages(
    json: Annotated[bool, typer.Option("--json", help="Print the registry as JSON")] = False,
) -> None:
    """List the source languages (the same registry GET /v1/languages serves)."""
    if json:
        sys.stdout.write(
            "[" + ",".join(lang.model_dump_json() for lang in LANGUAGES.values()) + "]\n"
        )
        return
    for lang in LANGUAGES.values():
        typer.echo(f"{lang.id:<11} {lang.name:<11} judge0={lang.judge0_id:<5} {lang.version}")


@app.command()
def warm(
    python: Annotated[
        bool, typer.Option("--python/--no-python", help="Build Warden's CPython (~5 min once)")
    ] = True,
) -> None:
    """Build the zig sysroot, QuickJS and Warden's CPython; compile the interpreters."""
    import time

    from sandboxes.languages.source_runner import SourceRunner
    from sandboxes.languages.toolchains.python_runtime import ensure_built
    from sandboxes.runtime.sandbox import Sandbox
    from sandboxes.settings import get_settings

    started = time.perf_counter()
    if python:
        problem = ensure_built(get_settings().toolchain_dir)
        if problem is not None:  # Python jobs still run, on the slower pinned build
            typer.echo(f"warden: {problem}; Python uses the pinned -O0 build", err=True)
    runner = SourceRunner(Sandbox())
    runner.warm()
    typer.echo(f"warden: toolchains ready in {time.perf_counter() - started:.1f}s "
               f"(Python {runner.python.version})")


def validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


def summary(result: RunResult) -> str:
    parts = [f"status={result.status.value}"]
    if result.trap_kind:
        parts.append(f"trap={result.trap_kind.value}")
    if result.exit_code is not None:
        parts.append(f"exit={result.exit_code}")
    parts.append(f"time={result.wall_time_s * 1000:.2f}ms")
    parts.append(f"fuel={result.fuel_used}")
    parts.append(f"memory={format_size(result.memory_peak_bytes)}")
    if result.stdout_truncated or result.stderr_truncated:
        parts.append("output=truncated")
    line = "[warden] " + " ".join(parts)
    return line + (f"\n[warden] {result.message}" if result.message else "")


def exit_code(result: RunResult) -> int:
    """The process exit code for ``result``: a failed run never exits 0 (a shell keeps only
    the low 8 bits, so a guest's 256 would read as success: codes above 255 exit 255)."""
    if result.status is RunStatus.OK:
        return 0
    if result.status is RunStatus.NONZERO_EXIT:
        return min(result.exit_code or 1, EXIT_CODE_MAX)
    if result.status in (
        RunStatus.INVALID_MODULE, RunStatus.LINK_ERROR, RunStatus.UNSUPPORTED,
        RunStatus.COMPILE_ERROR, RunStatus.INTERNAL_ERROR,
    ):
        return EXIT_INVALID
    return EXIT_LIMIT


def main() -> None:
    app()


if __name__ == "__main__":
    main()
