"""The full ``warden`` command: the sandbox commands plus up, api, worker and submit."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from sandboxes.cli import EXIT_INVALID, app, language_of
from sandboxes.settings import Settings, get_settings

__all__ = ["app"]


def _settings(**overrides: object) -> Settings:
    base = get_settings().model_dump()
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Settings.model_validate(base)


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
    try:
        redis_url = sup.start()
        typer.echo(f"warden: API on http://{settings.host}:{settings.port} "
                   f"(docs: /docs), {settings.workers} worker(s), Redis {redis_url}")
        sup.watch()
    except KeyboardInterrupt:
        typer.echo("warden: stopping…", err=True)
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
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the result")] = True,
    json: Annotated[bool, typer.Option("--json", help="Print the record as JSON")] = False,
    url: Annotated[str, typer.Option(help="API base URL")] = "http://127.0.0.1:8000",
) -> None:
    """Submit a job to a running Warden and print its result."""
    import base64

    from sandboxes.schema import Grants, JobRecord, JobSubmission
    from service.client import WardenClient, WardenError

    try:
        data = file.read_bytes()
        grants = Grants(stdin=stdin.read_bytes() if stdin else b"")
    except OSError as exc:
        typer.echo(f"warden: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    lang = lang or language_of(file)
    if lang:
        sub = JobSubmission(language=lang, source=data.decode(errors="replace"), grants=grants)
    elif data.startswith(b"\0asm"):
        sub = JobSubmission(wasm_base64=base64.b64encode(data).decode(), grants=grants)
    else:
        sub = JobSubmission(wat=data.decode(errors="replace"), grants=grants)
    try:
        with WardenClient(url) as client:
            outcome = client.submit(sub, wait_s=60 if wait else 0)
    except WardenError as err:
        typer.echo(f"warden: {err}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    except Exception as exc:  # connection refused and the like
        typer.echo(f"warden: cannot reach {url}: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    if not isinstance(outcome, JobRecord):
        typer.echo(outcome)
        return
    if json:
        sys.stdout.write(outcome.model_dump_json(indent=2) + "\n")
    elif outcome.result is not None:
        sys.stdout.buffer.write(outcome.result.stdout)
        sys.stderr.buffer.write(outcome.result.stderr)
        if outcome.result.compile_output:
            typer.echo(outcome.result.compile_output, err=True)
        typer.echo(f"[warden] job {outcome.id} {outcome.state.value}: "
                   f"{outcome.result.status.value}", err=True)
    else:
        typer.echo(f"[warden] job {outcome.id} {outcome.state.value} {outcome.error or ''}",
                   err=True)


if __name__ == "__main__":
    app()
