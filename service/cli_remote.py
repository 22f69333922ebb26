"""What the commands that talk to a running Warden share: the API's address, one-line API
errors with their exit codes, and a job record shown the way ``warden run`` shows a result
(same output, same exit codes)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import httpx
import typer

from sandboxes.cli import fail, print_result
from sandboxes.exit_codes import ExitCode, record_exit_code
from sandboxes.schema import JobRecord
from sandboxes.settings import get_settings
from service.client import WardenClient, WardenError, api_url, find_api_key

UrlOpt = Annotated[str | None, typer.Option(
    help="API base URL (default: http://WARDEN_HOST:WARDEN_PORT)")]
KeyOpt = Annotated[str | None, typer.Option(
    "--key", help="API key (default: WARDEN_API_KEY, else the key `warden up` stored in "
                  "the data dir)")]


@contextmanager
def connect(url: str | None, doing: str = "the request",
            key: str | None = None) -> Iterator[WardenClient]:
    """A client for the API at ``url`` with the caller's key; an API error or an API that
    cannot be reached is one line and an exit code (125 refused, 120 unreachable or a
    server error)."""
    settings = get_settings()
    base = url or api_url(settings)
    api_key = find_api_key(settings, key)
    try:
        with WardenClient(base, api_key=api_key) as client:
            yield client
    except WardenError as err:
        if err.status == 401 and api_key is None:
            raise fail(f"the API needs a key for {doing}: pass --key or set WARDEN_API_KEY "
                       f"(`warden up` stores its first key in {settings.data_dir}/api-key)"
                       ) from None
        problem = err.title + (f": {err.detail}" if err.detail else "")
        if err.status >= 500:
            raise fail(f"the API could not take {doing} ({err.status} {err.kind}): {problem}",
                       ExitCode.API) from None
        raise fail(f"the API refused {doing} ({err.status} {err.kind}): {problem}") from None
    except httpx.TransportError as exc:
        raise fail(f"cannot reach the Warden API at {base} ({exc or type(exc).__name__}); "
                   "is `warden up` running?", ExitCode.API) from None


def show_record(record: JobRecord, json: bool) -> int:
    """Print a job's record (its result as `warden run` prints one); its exit code."""
    if json:
        sys.stdout.write(record.model_dump_json(indent=2) + "\n")
    elif record.result is not None:
        print_result(record.result, f"job {record.id} {record.state.value}: ")
    elif record.state.terminal:
        typer.echo(f"[warden] job {record.id} {record.state.value}: "
                   f"{record.error or 'no result'}", err=True)
    else:
        typer.echo(f"[warden] job {record.id} is still {record.state.value} "
                   f"(`warden job get {record.id} --wait 60` waits for it)", err=True)
    return record_exit_code(record)


def stopped_waiting(record: JobRecord) -> typer.Exit:
    """Ctrl-C while waiting: the job goes on; say how to find it again."""
    typer.echo(f"warden: stopped waiting; job {record.id} is still {record.state.value} "
               f"(`warden job get {record.id}`)", err=True)
    return typer.Exit(ExitCode.INTERRUPTED)
