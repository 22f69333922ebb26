"""The ``warden`` command line. Subcommands of later parts (up, api, worker, submit, job)
register on the same Typer app; the options a job takes are defined here once, for both
``warden run`` (in-process) and ``warden submit`` (through the API)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Final

import typer
from pydantic import ValidationError

from sandboxes.exit_codes import ExitCode, exit_code, help_text
from sandboxes.languages.registry import LANGUAGES, get_language
from sandboxes.schema import (
    NOT_RUN,
    Grants,
    Limits,
    RunResult,
    RunStatus,
    ScratchGrant,
    error_message,
    limit_message,
)
from sandboxes.settings import SettingsError, get_settings
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
    check_settings()


def check_settings() -> None:
    """Every command needs valid WARDEN_* settings: a bad one is one line and exit 2."""
    try:
        get_settings()
    except SettingsError as err:
        typer.echo(f"warden: {err}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None


def fail(message: str, code: int = ExitCode.REJECTED) -> typer.Exit:
    typer.echo(f"warden: {message}", err=True)
    return typer.Exit(code)


# -- what a file is ------------------------------------------------------------------------
MODULE_SUFFIXES: Final = (".wasm", ".wat")
SOURCE_SUFFIXES: Final = {Path(lang.file_name).suffix: lang.id for lang in LANGUAGES.values()}
_LANGUAGE_IDS: Final = ", ".join(LANGUAGES)


def noun(path: Path, lang: str | None) -> str:
    """What to call ``path`` in messages: source is never a "module"."""
    if lang or path.suffix in SOURCE_SUFFIXES:
        return "source"
    return "module" if path.suffix in MODULE_SUFFIXES else "file"


def language_of(path: Path, data: bytes, lang: str | None = None) -> str | None:
    """The language of a source file, or None for a module (``.wasm``, ``.wat``, or wasm
    bytes under any name). Any other name needs ``--lang``: it is refused, not guessed."""
    if lang:
        return lang
    if path.suffix in MODULE_SUFFIXES or data.startswith(b"\0asm"):
        return None
    language = SOURCE_SUFFIXES.get(path.suffix)
    if language is None:
        raise fail(f"cannot tell what {str(path)!r} is from its name: give --lang "
                   f"({_LANGUAGE_IDS}), or name a module .wasm or .wat")
    return language


def read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None


# -- the options of a job (run and submit) -------------------------------------------------
PathArg = Annotated[Path, typer.Argument(
    metavar="FILE", show_default=False,
    help="A module (.wasm binary or WASI P2 component, .wat text) or source "
         f"({' '.join(SOURCE_SUFFIXES)}); any other name needs --lang",
)]
LangOpt = Annotated[str | None, typer.Option(
    help=f"Source language ({_LANGUAGE_IDS}); default: from the file's suffix")]
FlagOpt = Annotated[list[str] | None, typer.Option(
    help="Allowed compiler flag, e.g. -O3 (repeatable)")]
StdinOpt = Annotated[Path | None, typer.Option(help="File whose bytes are the guest's stdin")]
ArgOpt = Annotated[list[str] | None, typer.Option(help="Guest argument (repeatable)")]
EnvOpt = Annotated[list[str] | None, typer.Option(
    help="Guest env var NAME=VALUE (repeatable)")]
FileOpt = Annotated[list[str] | None, typer.Option(
    "--file", help="Read-only file NAME=PATH, visible at /NAME (repeatable)")]
ScratchOpt = Annotated[str | None, typer.Option(
    help="Grant a writable /tmp with this quota, e.g. 16MiB")]
FuelOpt = Annotated[int | None, typer.Option(help="Fuel budget (~ wasm instructions)")]
MemoryOpt = Annotated[str | None, typer.Option(help="Linear memory limit, e.g. 64MiB")]
TimeoutOpt = Annotated[str | None, typer.Option(help="Wall-clock limit, e.g. 2s or 500ms")]
StackOpt = Annotated[str | None, typer.Option(help="Wasm stack limit, e.g. 1MiB")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]


def job_inputs(
    *, stdin: Path | None, arg: list[str] | None, env: list[str] | None,
    file: list[str] | None, scratch: str | None, fuel: int | None, memory: str | None,
    timeout: str | None, stack: str | None,
) -> tuple[Limits, Grants]:
    """The limits (only those given: the rest stay the language's or the server's
    defaults) and grants the options ask for; a bad value is one line and exit 125."""
    given = {"fuel": fuel, "memory_bytes": memory, "wall_time_s": timeout,
             "stack_bytes": stack}
    try:
        limits = Limits.model_validate({k: v for k, v in given.items() if v is not None})
        grants = Grants(
            args=arg or [],
            env=_pairs(env or [], "--env"),
            stdin=read(stdin, "stdin") if stdin else b"",
            files={name: read(Path(path), "file")
                   for name, path in _pairs(file or [], "--file").items()},
            scratch=ScratchGrant(quota_bytes=scratch) if scratch else None,
        )
    except ValidationError as exc:
        raise fail(validation_text(exc)) from None
    return limits, grants


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"{what} {item!r} must look like NAME=VALUE")
        out[key] = value
    return out


# The command-line option that sets each field, to name it in an error.
_OPTIONS: Final = {
    "fuel": "--fuel", "memory_bytes": "--memory", "wall_time_s": "--timeout",
    "stack_bytes": "--stack", "quota_bytes": "--scratch", "stdin": "--stdin",
    "args": "--arg", "env": "--env", "files": "--file",
}


def validation_text(exc: ValidationError) -> str:
    """The errors in the words of the command line: options, not field names."""
    texts = []
    for err in exc.errors():
        message = error_message(err)
        if limit_message(tuple(err["loc"]), err["type"], dict(err.get("ctx") or {})) is None:
            names = [_OPTIONS.get(str(p), str(p)) for p in err["loc"]]
            where = next((n for n in names if n.startswith("--")), None)
            message = f"{where or '.'.join(names) or 'value'}: {message}"
        texts.append(message)
    return "; ".join(texts)


# -- commands ------------------------------------------------------------------------------
@app.command(epilog=help_text())
def run(
    path: PathArg, lang: LangOpt = None, flag: FlagOpt = None, stdin: StdinOpt = None,
    arg: ArgOpt = None, env: EnvOpt = None, file: FileOpt = None, scratch: ScratchOpt = None,
    fuel: FuelOpt = None, memory: MemoryOpt = None, timeout: TimeoutOpt = None,
    stack: StackOpt = None, json: JsonOpt = False,
) -> None:
    """Run a WebAssembly module, or compile source in the jail and run it, under limits."""
    if lang and get_language(lang) is None:
        raise fail(f"unknown language {lang!r} (languages: {_LANGUAGE_IDS})")
    data = read(path, noun(path, lang))
    language = language_of(path, data, lang)
    limits, grants = job_inputs(stdin=stdin, arg=arg, env=env, file=file, scratch=scratch,
                                fuel=fuel, memory=memory, timeout=timeout, stack=stack)
    from sandboxes.runtime.sandbox import Sandbox  # deferred: wasmtime import is not free

    if language is not None:
        from sandboxes.languages.source_runner import SourceRunner

        registered = get_language(language)
        if registered is not None:
            limits = registered.limits(limits)  # its defaults under the options given
        result = SourceRunner(Sandbox()).run(language, data, limits, grants, flag or [])
    elif flag:
        raise fail("--flag applies to source only")
    else:
        result = Sandbox().run(data, limits, grants)
    if json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        print_result(result)
    raise typer.Exit(exit_code(result))


def print_result(result: RunResult, heading: str = "") -> None:
    """The guest's output as it wrote it, the compiler's messages, then the summary."""
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    if result.compile_output:
        typer.echo(result.compile_output.rstrip("\n"), err=True)
    typer.echo(summary(result, heading), err=True)


def summary(result: RunResult, heading: str = "") -> str:
    """``[warden] status=… figures``, then the message. A run that never started the
    guest (a compile error, an invalid module...) shows only what it has (the compile
    time): it has no run figures."""
    parts = [f"status={result.status.value}"]
    if result.status not in NOT_RUN:
        if result.trap_kind:
            parts.append(f"trap={result.trap_kind.value}")
        if result.exit_code is not None:
            parts.append(f"exit={result.exit_code}")
        parts.append(f"time={_ms(result.wall_time_s)}")
        parts.append(f"fuel={result.fuel_used}")
        parts.append(f"memory={format_size(result.memory_peak_bytes)}")
    if result.compile_time_s:
        parts.append(f"compile={_ms(result.compile_time_s)}")
    elif result.status is RunStatus.COMPILE_ERROR:  # the compiler's verdict, remembered
        parts.append("compile=cached" if result.compile_cached else "compile=0.00ms")
    if result.stdout_truncated or result.stderr_truncated:
        parts.append("output=truncated")
    line = "[warden] " + heading + " ".join(parts)
    return line + (f"\n[warden] {result.message}" if result.message else "")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}ms"


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
    jail_toolchains: Annotated[
        bool | None, typer.Option(
            "--jail-toolchains/--no-jail-toolchains",
            help="Build the jail pool's zig sysroot (default: when the bwrap jail works here; "
            "an image build, where it does not, says --jail-toolchains)")
    ] = None,
) -> None:
    """Build the toolchains and compile the interpreters, showing each step.

    The zig sysroot, Go's standard library, QuickJS, Ruby and Warden's CPython (about 10
    minutes on a fresh machine, seconds afterwards), then a summary of the steps' times.
    """
    import logging

    from rich.console import Console
    from rich.logging import RichHandler

    from sandboxes.cli_steps import Steps
    from sandboxes.languages.source_runner import SourceRunner
    from sandboxes.languages.toolchains.python_runtime import ensure_built
    from sandboxes.runtime.sandbox import Sandbox

    progress = Console(stderr=True)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[
        RichHandler(console=progress, show_time=False, show_path=False)])
    with Steps(progress) as steps:
        if python:
            steps.start("Warden's CPython for WASI (a ~5 minute build, once)")
            problem = ensure_built(get_settings().toolchain_dir)
            if problem is not None:  # Python jobs still run, on the slower pinned build
                steps.note(f"{problem}; Python uses the pinned -O0 build")
        runner = SourceRunner(Sandbox())
        runner.warm(progress=steps.start, jail_toolchains=jail_toolchains)
    out = Console()
    out.print(steps.summary())
    out.print(f"warden: toolchains ready in {steps.total_s:.1f}s "
              f"(Python {runner.python.version})", highlight=False, soft_wrap=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
