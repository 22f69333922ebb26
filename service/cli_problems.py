"""``warden problem ...``: judge problems on a running Warden (import, create, get, list,
delete, submit) and ``verify``, which judges a Kattis package's own submissions here, in
this process's sandbox, as Kattis's verifyproblem does."""

from __future__ import annotations

import base64
import json as json_module
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import typer
from pydantic import ValidationError

from judge.grading import Grade, Plan
from judge.kattis import KattisPackage, KattisSubmission, PackageError, load_package
from judge.local import judge_locally
from judge.problem import (
    Problem,
    ProblemType,
    ProblemUpload,
    SubmissionCreate,
    SubmissionRecord,
    TestResult,
    check_problem_id,
)
from judge.runner import TimingConfig
from judge.timing import kattis_time_limit
from judge.verdicts import Verdict
from sandboxes.cli import fail, language_of, validation_text
from sandboxes.settings import get_settings
from service.cli_remote import KeyOpt, UrlOpt, connect

app = typer.Typer(help="Judge problems: import a Kattis package, submit, verify.",
                  no_args_is_help=True)

DirArg = Annotated[Path, typer.Argument(help="A Kattis problem package directory",
                                        exists=True, file_okay=False)]
IdArg = Annotated[str, typer.Argument(help="Problem id ([a-z0-9_-], up to 64)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
NOT_ACCEPTED: Final = 1  # `submit`: not AC; `verify`: a submission got another verdict

# What each Kattis submissions/ directory must get (Kattis's defaults)
EXPECTED: Final[dict[str, frozenset[Verdict]]] = {
    "accepted": frozenset({Verdict.AC}),
    "partially_accepted": frozenset({Verdict.AC, Verdict.WA, Verdict.TLE, Verdict.RE}),
    "wrong_answer": frozenset({Verdict.WA}),
    "time_limit_exceeded": frozenset({Verdict.TLE}),
    "run_time_error": frozenset({Verdict.RE}),
    "rejected": frozenset({Verdict.WA, Verdict.TLE, Verdict.RE, Verdict.MLE, Verdict.OLE}),
    "brute_force": frozenset({Verdict.RE, Verdict.TLE, Verdict.AC}),
}


def _load(path: Path) -> KattisPackage:
    try:
        return load_package(path)
    except PackageError as err:
        raise fail(f"cannot import {path}: {err}") from None


def full_score(problem: Problem) -> float:
    """The score of a submission that every test accepts: what an accepted one must get."""
    plan = Plan(problem)
    return plan.grade({name: TestResult(name=name, verdict=Verdict.AC)
                       for name in plan.order}).score


@dataclass
class Verified:
    submission: KattisSubmission
    grade: Grade
    ok: bool
    note: str = ""


def _judge_all(pkg: KattisPackage, problem: Problem,
               submissions: list[KattisSubmission]) -> list[tuple[KattisSubmission, Grade]]:
    from sandboxes.languages.source_runner import SourceRunner
    from sandboxes.runtime.sandbox import Sandbox

    settings = get_settings()
    sources = SourceRunner(Sandbox(settings))
    timing = TimingConfig(settings.judge_fuel_per_second, settings.judge_wall_factor,
                          settings.judge_wall_extra_s)
    try:
        return [(s, judge_locally(sources, problem, pkg.blobs, s.language, s.source,
                                  timing=timing)) for s in submissions]
    finally:
        sources.sandbox.close()


def derive_time_limit(pkg: KattisPackage) -> tuple[Problem, float | None]:
    """The package's problem with its time limit: the fixed one, or Kattis's rule over the
    slowest accepted submission's slowest test (in fuel time: the same on any machine)."""
    if pkg.time_limit_fixed:
        return pkg.problem, None
    accepted = [s for s in pkg.submissions if s.category == "accepted"]
    if not accepted:
        raise fail("the package fixes no time limit and has no accepted submission to derive "
                   "one from (Kattis needs submissions/accepted)")
    generous = pkg.problem.model_copy(update={"limits": pkg.problem.limits.model_copy(
        update={"time_limit_s": 60.0})})
    slowest, counted = 0.0, 0
    for sub, grade in _judge_all(pkg, generous, accepted):
        if grade.verdict is not Verdict.AC:  # verify reports it; it sets no time limit
            typer.echo(f"[warden] {sub.path} is not accepted even with 60 s "
                       f"({grade.verdict.value}): not used for the time limit", err=True)
            continue
        counted += 1
        slowest = max([slowest, *(t.time_s or 0.0 for t in grade.tests)])
    if not counted:
        raise fail("no accepted submission is accepted: no time limit can be derived")
    limit, _ = kattis_time_limit(slowest, pkg.time_multiplier, 1.0, pkg.time_resolution)
    problem = pkg.problem.model_copy(update={"limits": pkg.problem.limits.model_copy(
        update={"time_limit_s": limit})})
    return problem, slowest


@app.command("verify")
def verify(path: DirArg, json: JsonOpt = False) -> None:
    """Judge the package's own submissions here and report each whose verdict differs from
    its directory (accepted, wrong_answer, time_limit_exceeded, run_time_error, ...)."""
    pkg = _load(path)
    for warning in pkg.warnings:
        typer.echo(f"[warden] warning: {warning}", err=True)
    for skipped in pkg.skipped:
        typer.echo(f"[warden] not judged: {skipped}", err=True)
    problem, slowest = derive_time_limit(pkg)
    limit = problem.limits.time_limit_s
    if slowest is not None:
        typer.echo(f"time limit {limit:g} s (slowest accepted {slowest:.6f} s x "
                   f"{pkg.time_multiplier:g})")
    high = problem.model_copy(update={"limits": problem.limits.model_copy(
        update={"time_limit_s": min(limit * pkg.safety_margin, 60.0)})})
    judged = _judge_all(pkg, problem, pkg.submissions)
    results: list[Verified] = []
    for sub, grade in judged:
        expected = EXPECTED.get(sub.category, frozenset())
        ok = grade.verdict in expected
        if sub.category == "accepted" and problem.type is ProblemType.SCORING:
            ok = ok and grade.score >= full_score(problem)
        note = ""
        if sub.category == "partially_accepted":
            ok = grade.score > 0
        if ok and sub.category in ("accepted", "wrong_answer", "run_time_error"):
            again = _judge_all(pkg, high, [sub])[0][1]  # Kattis's safety-margin check
            if again.verdict is not grade.verdict or again.score != grade.score:
                note = (f"sensitive to the time limit: {again.verdict.value} at "
                        f"{high.limits.time_limit_s:g} s")
        results.append(Verified(sub, grade, ok, note))
    if json:
        sys.stdout.write(json_module.dumps([
            {"path": r.submission.path, "category": r.submission.category,
             "verdict": r.grade.verdict.value, "score": r.grade.score, "ok": r.ok,
             "first_failure": r.grade.first_failure, "warning": r.note or None}
            for r in results], indent=2) + "\n")
    else:
        for r in results:
            score = f" score {r.grade.score:g}" if problem.type is ProblemType.SCORING else ""
            where = f" (first failure {r.grade.first_failure})" if r.grade.first_failure \
                else ""
            line = f"{'ok ' if r.ok else 'BAD'} {r.submission.path}: {r.grade.verdict.value}"
            line += score + where + (f"; warning: {r.note}" if r.note else "")
            typer.echo(line)
    bad = sum(not r.ok for r in results)
    if bad:
        raise typer.Exit(NOT_ACCEPTED)


@app.command("import")
def import_package(
    path: DirArg,
    problem_id: Annotated[str | None, typer.Option("--id", help="Problem id (default: the "
                                                   "package's directory name)")] = None,
    time_limit: Annotated[float | None, typer.Option(
        help="Seconds per test (default: the package's, else derived from its accepted "
             "submissions as `verify` does)")] = None,
    url: UrlOpt = None, key: KeyOpt = None,
) -> None:
    """Upload a Kattis package as a problem (a new version if it exists)."""
    pkg = _load(path)
    try:
        pid = check_problem_id(problem_id or pkg.short_name)
    except ValueError as err:
        raise fail(str(err)) from None
    for warning in pkg.warnings:
        typer.echo(f"[warden] warning: {warning}", err=True)
    if time_limit is not None:
        problem = pkg.problem.model_copy(update={"limits": pkg.problem.limits.model_copy(
            update={"time_limit_s": time_limit})})
    else:
        problem, _ = derive_time_limit(pkg)
    with connect(url, "the problem", key) as client:
        for data in pkg.blobs.values():
            client.put_blob(data)
        record = client.put_problem(pid, ProblemUpload(problem=problem))
    typer.echo(f"problem {record.id} version {record.version}: {len(problem.cases())} tests, "
               f"time limit {problem.limits.time_limit_s:g} s")


@app.command("create")
def create(problem_id: IdArg,
           file: Annotated[Path, typer.Argument(help="JSON: {problem, blobs} as PUT takes",
                                                exists=True, dir_okay=False)],
           url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Create or replace a problem from a JSON file (the PUT /v1/problems/{id} body)."""
    try:
        upload = ProblemUpload.model_validate_json(file.read_bytes())
    except ValidationError as exc:
        raise fail(f"{file}: {validation_text(exc)}") from None
    with connect(url, "the problem", key) as client:
        record = client.put_problem(problem_id, upload)
    typer.echo(f"problem {record.id} version {record.version}")


@app.command("get")
def get(problem_id: IdArg, version: int | None = None, url: UrlOpt = None,
        key: KeyOpt = None) -> None:
    """Print a problem (JSON)."""
    with connect(url, "the problem", key) as client:
        record = client.get_problem(problem_id, version)
    sys.stdout.write(record.model_dump_json(indent=2) + "\n")


@app.command("list")
def list_(url: UrlOpt = None, key: KeyOpt = None) -> None:
    """The tenant's problem ids."""
    with connect(url, "the listing", key) as client:
        for problem_id in client.list_problems():
            typer.echo(problem_id)


@app.command("delete")
def delete(problem_id: IdArg, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Delete a problem, every version."""
    with connect(url, "the deletion", key) as client:
        client.delete_problem(problem_id)
    typer.echo(f"problem {problem_id} deleted")


@app.command("submit")
def submit(problem_id: IdArg,
           file: Annotated[Path, typer.Argument(help="Source file or .wasm/.wat module",
                                                exists=True, dir_okay=False)],
           language: Annotated[str | None, typer.Option(
               help="Language id (default: from the file name)")] = None,
           wait: Annotated[float, typer.Option(help="Seconds to wait for the verdict")] = 120,
           json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Judge a file; exit 0 when accepted, 1 otherwise."""
    data = file.read_bytes()
    lang = language_of(file, data, language)
    if lang is not None:
        body = SubmissionCreate(language=lang, source=data.decode(errors="replace"))
    elif data.startswith(b"\0asm"):
        body = SubmissionCreate(wasm_base64=base64.b64encode(data).decode())
    else:
        body = SubmissionCreate(wat=data.decode(errors="replace"))
    with connect(url, "the submission", key) as client:
        record = client.submit_solution(problem_id, body, wait)
    if not isinstance(record, SubmissionRecord):
        typer.echo(f"submission {record.id} queued")
        return
    if json:
        sys.stdout.write(record.model_dump_json(indent=2) + "\n")
    else:
        for t in record.tests:
            time = f"{t.time_s:.3f} s" if t.time_s is not None else "-"
            msg = f"  {t.message}" if t.message else ""
            typer.echo(f"{t.verdict.value:>7}  {time:>9}  {t.name}{msg}")
        if record.compile_output:
            typer.echo(record.compile_output, err=True)
        verdict = record.verdict.value if record.verdict else record.state.value
        typer.echo(f"{verdict} score {record.score:g}" if record.score is not None
                   else verdict)
    if record.verdict is not Verdict.AC:
        raise typer.Exit(NOT_ACCEPTED)
