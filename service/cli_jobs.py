"""``warden job get|cancel|list``: what to do with the id ``warden submit --no-wait``
printed, or with any job of a running Warden."""

from __future__ import annotations

import sys
from datetime import UTC
from typing import Annotated

import typer

from sandboxes.cli import fail
from sandboxes.exit_codes import ExitCode, help_text
from sandboxes.schema import MAX_BATCH, JobList, JobRecord, JobState
from sandboxes.units import parse_duration
from service.cli_remote import KeyOpt, UrlOpt, connect, show_record, stopped_waiting
from service.client import WardenError

app = typer.Typer(help="Read, cancel and list the jobs of a running Warden.",
                  no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(metavar="ID", help="A job id (as `warden submit` prints)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the job record as JSON")]


@app.command(epilog=help_text())
def get(
    job_id: IdArg,
    wait: Annotated[str | None, typer.Option(
        metavar="SECONDS", help="Wait up to this long for the job to end, e.g. 30 or 2m")] = None,
    json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None,
) -> None:
    """Show a job: its output and summary, or its state if it has not ended.

    The exit code is the one `warden run` would give its result; 118 while it is queued
    or running.
    """
    try:
        wait_s = parse_duration(wait) if wait is not None else 0.0
    except ValueError as err:
        raise fail(f"--wait: {err}") from None
    with connect(url, key=key) as client:
        record = client.get(job_id)
        if wait_s > 0 and not record.state.terminal:
            try:
                record = client.wait(job_id, timeout_s=wait_s)
            except KeyboardInterrupt:
                raise stopped_waiting(record) from None
    raise typer.Exit(show_record(record, json))


@app.command()
def cancel(job_id: IdArg, json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Cancel a queued or running job.

    Exit 0 once it is cancelled; 118 if it is still stopping; 125 if it had already
    finished or failed (nothing to cancel).
    """
    with connect(url, "the cancel", key) as client:
        try:
            record = client.cancel(job_id)
        except WardenError as err:
            if err.status != 409:
                raise
            raise fail(f"cannot cancel job {job_id}: {err.detail or err.title}") from None
    if json:
        sys.stdout.write(record.model_dump_json(indent=2) + "\n")
    if record.state is JobState.CANCELLED:
        typer.echo(f"[warden] job {job_id} cancelled", err=True)
        raise typer.Exit(ExitCode.OK)
    if not record.state.terminal:
        typer.echo(f"[warden] job {job_id} is stopping (still {record.state.value})", err=True)
        raise typer.Exit(ExitCode.PENDING)
    raise fail(f"job {job_id} {record.state.value} before the cancel took effect")


@app.command("list")
def list_jobs(
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="Jobs per page")] = 20,
    cursor: Annotated[str | None, typer.Option(
        help="Page to show: the cursor the page before printed")] = None,
    json: Annotated[bool, typer.Option(
        "--json", help='Print {"jobs": [...], "next_cursor": ...} as JSON')] = False,
    url: UrlOpt = None, key: KeyOpt = None,
) -> None:
    """List recent jobs, newest first, a page at a time."""
    with connect(url, key=key) as client:
        records, next_cursor = client.list_jobs(state, limit, cursor)
    if json:
        page = JobList(jobs=[*records], next_cursor=next_cursor)
        sys.stdout.write(page.model_dump_json(indent=2) + "\n")
        return
    for record in records:
        typer.echo(row(record))
    if next_cursor is not None:
        more = f"warden job list --cursor {next_cursor} --limit {limit}"
        typer.echo(f"[warden] more: {more}" + (f" --state {state.value}" if state else ""),
                   err=True)


def row(record: JobRecord) -> str:
    """One job per line: id, state, result status, when it was created (UTC)."""
    status = record.result.status.value if record.result is not None else "-"
    created = record.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{record.id}  {record.state.value:<9}  {status:<14}  {created}"
