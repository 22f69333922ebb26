"""The full ``warden`` command: the sandbox commands plus up, api, worker, submit and job."""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path
from typing import Annotated, Final

import typer
from pydantic import ValidationError

from sandboxes.cli import (
    ArgOpt,
    EnvOpt,
    FileOpt,
    FlagOpt,
    FuelOpt,
    LangOpt,
    MemoryOpt,
    PathArg,
    ScratchOpt,
    StackOpt,
    StdinOpt,
    TimeoutOpt,
    app,
    fail,
    job_inputs,
    language_of,
    noun,
    read,
    validation_text,
)
from sandboxes.compilation.modules import NOT_A_MODULE
from sandboxes.exit_codes import ExitCode, help_text
from sandboxes.settings import Settings, get_settings
from service.cli_jobs import app as jobs_app
from service.cli_problems import app as problems_app
from service.cli_remote import KeyOpt, UrlOpt, connect, show_record, stopped_waiting
from service.cli_tenants import keys_app, tenants_app
from tenancy.bootstrap import key_file

__all__ = ["app"]

API_SHUTDOWN_GRACE_S: Final = 10  # open requests get this long after SIGTERM


def _settings(**overrides: object) -> Settings:
    base = get_settings().model_dump()
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(base)
    except ValidationError as exc:  # e.g. --workers 0: one line, not a traceback
        raise fail(validation_text(exc)) from None


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="API address (WARDEN_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="API port (WARDEN_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (WARDEN_WORKERS)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data dir (WARDEN_DATA_DIR)")] = None,
) -> None:
    """Start Redis (embedded unless WARDEN_REDIS_URL is set), the API and the workers."""
    from service.supervisor import Supervisor

    settings = _settings(host=host, port=port, workers=workers, data_dir=data_dir)
    sup = Supervisor(settings)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    host_part = f"[{settings.host}]" if ":" in settings.host else settings.host
    try:
        redis_url = sup.start()
        typer.echo(f"warden: API on http://{host_part}:{settings.port} "
                   f"(docs: /docs), {settings.workers} worker(s), Redis {redis_url}, "
                   f"data in {sup.settings.data_dir}")
        if sup.first_key is not None:  # shown this once; the client commands read the file
            typer.echo(f"warden: created tenant 'default' and its admin key (shown once, "
                       f"kept in {key_file(sup.settings.data_dir)}, mode 0600):\n"
                       f"{sup.first_key.secret}")
        sup.watch()
    except KeyboardInterrupt:
        typer.echo("warden: stopping…", err=True)
    except RuntimeError as err:  # the embedded Redis could not start
        typer.echo(f"warden: {err}", err=True)
        raise typer.Exit(1) from None
    finally:
        sup.stop()


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Listen address (WARDEN_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (WARDEN_PORT)")] = None,
) -> None:
    """Run the HTTP API only (Kubernetes: one container per API pod)."""
    import uvicorn

    from service.app import create_app

    settings = _settings(host=host, port=port)
    # On SIGTERM, requests still open after this are cut (a ?wait long poll, a browser's
    # open connection): uvicorn would otherwise wait for them without end, so the API took
    # over 30 s to stop. A cut wait loses nothing: the job runs on, the client asks again.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="warning", access_log=False,
                timeout_graceful_shutdown=API_SHUTDOWN_GRACE_S)


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty")] = False,
) -> None:
    """Run one worker process only (Kubernetes: one per worker pod container)."""
    from workers.worker import run_worker

    run_worker(burst=burst)


def _text(path: Path, data: bytes, what: str) -> str:
    """The file as the API carries it (JSON text), never altered: bytes that are not
    UTF-8 are refused, where ``warden run`` would read them as they are."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        if what == "module":
            reason = NOT_A_MODULE
        else:
            reason = "source must be UTF-8 text to be sent (convert it, e.g. with iconv)"
        raise fail(f"{path}: {reason} (byte {err.start} is not UTF-8)") from None


@app.command(epilog=help_text())
def submit(
    path: PathArg, lang: LangOpt = None, flag: FlagOpt = None, stdin: StdinOpt = None,
    arg: ArgOpt = None, env: EnvOpt = None, file: FileOpt = None, scratch: ScratchOpt = None,
    fuel: FuelOpt = None, memory: MemoryOpt = None, timeout: TimeoutOpt = None,
    stack: StackOpt = None,
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Wait for the result (--no-wait: print the job id)"
    )] = True,
    json: Annotated[bool, typer.Option("--json", help="Print the job record as JSON")] = False,
    callback_url: Annotated[str | None, typer.Option(
        "--callback-url", metavar="URL",
        help="Also POST the record to this http(s) URL when the job ends")] = None,
    url: UrlOpt = None, key: KeyOpt = None,
) -> None:
    """Submit a job to a running Warden and print its result, as `warden run` would.

    With --no-wait, print the job's id: `warden job get ID` shows it later.
    """
    import base64

    from sandboxes.schema import JobSubmission

    data = read(path, noun(path, lang))
    language = language_of(path, data, lang)
    limits, grants = job_inputs(stdin=stdin, arg=arg, env=env, file=file, scratch=scratch,
                                fuel=fuel, memory=memory, timeout=timeout, stack=stack)
    common: dict[str, object] = {"limits": limits, "grants": grants}
    if flag:
        common["compiler_flags"] = flag
    if callback_url is not None:
        common["callback_url"] = callback_url
    try:
        if language:  # the server judges the language: its registry is the one that counts
            sub = JobSubmission(language=language, source=_text(path, data, "source"),
                                **common)
        elif data.startswith(b"\0asm"):
            sub = JobSubmission(wasm_base64=base64.b64encode(data).decode(), **common)
        else:
            sub = JobSubmission(wat=_text(path, data, "module"), **common)
    except ValidationError as exc:
        raise fail(validation_text(exc)) from None
    with connect(url, "the job", key) as client:
        if not wait:
            job_id = client.submit(sub)
            if json:
                sys.stdout.write(client.get(job_id).model_dump_json(indent=2) + "\n")
            else:
                typer.echo(job_id)
            return
        try:
            record = client.submit_and_wait(sub, wait_s=math.inf)
        except KeyboardInterrupt:  # the job may be queued: its id never came back
            raise fail("stopped waiting; `warden job list` shows the job if it was queued",
                       ExitCode.INTERRUPTED) from None
        try:
            if not record.state.terminal:  # the server's longest wait ran out
                record = client.wait(record.id)
        except KeyboardInterrupt:
            raise stopped_waiting(record) from None
    raise typer.Exit(show_record(record, json))


app.add_typer(jobs_app, name="job")
app.add_typer(problems_app, name="problem")
app.add_typer(tenants_app, name="tenant")
app.add_typer(keys_app, name="key")


if __name__ == "__main__":
    app()
