"""The full ``warden`` command: the sandbox commands plus up, api, worker and submit."""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from sandboxes.cli import (
    EXIT_INVALID,
    EXIT_LIMIT,
    app,
    exit_code,
    fail,
    language_of,
    read,
    summary,
    validation_text,
)
from sandboxes.schema import JobRecord, JobState
from sandboxes.settings import Settings, get_settings

__all__ = ["app"]


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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="warning", access_log=False)


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty")] = False,
) -> None:
    """Run one worker process only (Kubernetes: one per worker pod container)."""
    from workers.worker import run_worker

    run_worker(burst=burst)


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(
        help="A .wasm/.wat module, or source (.c .cpp .zig .rs .py .js, or any file with --lang)"
    )],
    lang: Annotated[
        str | None, typer.Option(help="Source language id (default: from the file suffix)")
    ] = None,
    stdin: Annotated[Path | None, typer.Option(help="File to use as stdin")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Wait for the result (--no-wait: print the job id)"
    )] = True,
    json: Annotated[bool, typer.Option("--json", help="Print the job record as JSON")] = False,
    url: Annotated[str | None, typer.Option(
        help="API base URL (default: http://WARDEN_HOST:WARDEN_PORT)"
    )] = None,
) -> None:
    """Submit a job to a running Warden and print its result.

    Exit code, as `warden run`: the guest's own for ok and nonzero_exit.

    124: a limit, a trap or a cancel ended the job.

    125: the API refused the job (its problem is printed) or cannot be reached.

    125 too: the source did not compile (the compiler's messages are printed).
    """
    import base64

    import httpx

    from sandboxes.schema import Grants, JobSubmission
    from service.client import WardenClient, WardenError, api_url

    data = read(file, "file")
    try:
        grants = Grants(stdin=read(stdin, "stdin") if stdin else b"")
    except ValidationError as exc:
        raise fail(validation_text(exc)) from None
    lang = lang or language_of(file)
    if lang:
        sub = JobSubmission(language=lang, source=data.decode(errors="replace"), grants=grants)
    elif data.startswith(b"\0asm"):
        sub = JobSubmission(wasm_base64=base64.b64encode(data).decode(), grants=grants)
    else:
        sub = JobSubmission(wat=data.decode(errors="replace"), grants=grants)
    url = url or api_url(get_settings())
    try:
        with WardenClient(url) as client:
            if not wait:
                job_id = client.submit(sub)
                if json:
                    sys.stdout.write(client.get(job_id).model_dump_json(indent=2) + "\n")
                else:
                    typer.echo(job_id)
                return
            record = client.submit_and_wait(sub, wait_s=math.inf)
            try:
                if not record.state.terminal:  # the server's longest wait ran out
                    record = client.wait(record.id)
            except KeyboardInterrupt:
                typer.echo(f"warden: stopped waiting; job {record.id} is still "
                           f"{record.state.value} (GET {url}/v1/jobs/{record.id})", err=True)
                raise typer.Exit(130) from None
    except WardenError as err:
        problem = err.title + (f": {err.detail}" if err.detail else "")
        raise fail(f"the API refused the job ({err.status} {err.kind}): {problem}") from None
    except httpx.TransportError as exc:
        raise fail(f"cannot reach the Warden API at {url} ({exc or type(exc).__name__}); "
                    "is `warden up` running?") from None
    if json:
        sys.stdout.write(record.model_dump_json(indent=2) + "\n")
    elif record.result is not None:
        sys.stdout.buffer.write(record.result.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(record.result.stderr)
        sys.stderr.flush()
        if record.result.compile_output:
            typer.echo(record.result.compile_output.rstrip("\n"), err=True)
        typer.echo(f"[warden] job {record.id} {record.state.value}: "
                   + summary(record.result).removeprefix("[warden] "), err=True)
    else:
        typer.echo(f"[warden] job {record.id} {record.state.value}: "
                   f"{record.error or 'no result'}", err=True)
    raise typer.Exit(_record_exit_code(record))


def _record_exit_code(record: JobRecord) -> int:
    """`warden run`'s exit code of the job's result; a job that ended without one (failed
    outside the sandbox, or cancelled before it ran) is 125 or 124."""
    if record.result is not None:
        return exit_code(record.result)
    return EXIT_LIMIT if record.state is JobState.CANCELLED else EXIT_INVALID


if __name__ == "__main__":
    app()
