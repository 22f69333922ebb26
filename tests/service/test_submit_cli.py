"""`warden submit` and `warden job get|cancel|list`: files of every kind through a real API
and workers, the options `warden run` takes, and the exit codes (`sandboxes/exit_codes.py`,
the same as `warden run`'s: the guest's own code, 123 a trap, 124 a limit, 122 a compile
error, 125 rejected input, 120 an API that cannot be reached or fails, 118 still running)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxes.exit_codes import MEANING, ExitCode
from sandboxes.languages.registry import LANGUAGES
from sandboxes.languages.source_runner import SourceRunner
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import JobList, JobRecord, JobState, RunStatus
from sandboxes.settings import Settings
from tests import wat_modules as W
from tests.service.cluster import ROOT, Cluster
from workers.redis_server import free_port

FIXTURES = ROOT / "tests" / "fixtures"
C_ECHO = (
    '#include <stdio.h>\nint main(void) { char b[32]; if (fgets(b, 32, stdin))'
    ' printf("c %s", b); return 0; }\n'
)


@pytest.fixture(scope="module", autouse=True)
def sysroot(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The machine-wide zig sysroot C jobs link against (built once, as install does)."""
    SourceRunner(Sandbox(Settings(data_dir=tmp_path_factory.mktemp("warm")))).zig.ensure_sysroot()


def warden(cluster: Cluster, *args: str | Path,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``warden ARGS`` in its own process; the API's address comes from the cluster's
    WARDEN_PORT (no --url) unless ``args`` or ``env`` say otherwise."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *map(str, args)],
        env={**cluster.env, **(env or {})}, cwd=ROOT, capture_output=True, text=True,
        timeout=90, check=False,
    )


def submit(cluster: Cluster, *args: str | Path,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return warden(cluster, "submit", *args, env=env)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


def test_a_wat_file_runs_on_the_api_found_through_the_settings(
    cluster: Cluster, tmp_path: Path
) -> None:
    proc = submit(cluster, write(tmp_path, "hello.wat", W.hello("from wat\n")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from wat\n"
    assert "finished: status=ok" in proc.stderr, proc.stderr


def test_the_url_defaults_to_warden_host_and_port_and_url_overrides_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    wat = write(tmp_path, "hello.wat", W.HELLO)
    nobody = str(free_port())
    refused = submit(cluster, wat, env={"WARDEN_PORT": nobody})
    assert refused.returncode == ExitCode.API
    assert f"127.0.0.1:{nobody}" in refused.stderr
    given = submit(cluster, wat, "--url", f"http://127.0.0.1:{cluster.port}",
                   env={"WARDEN_PORT": nobody})
    assert given.returncode == 0, given.stderr
    assert given.stdout == "hello\n"


def test_a_wasm_binary(cluster: Cluster) -> None:
    proc = submit(cluster, FIXTURES / "hello.wasm")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\n"


def test_c_source_language_from_the_suffix_with_stdin(cluster: Cluster, tmp_path: Path) -> None:
    source = write(tmp_path, "echo.c", C_ECHO)
    proc = submit(cluster, source, "--stdin", write(tmp_path, "in.txt", "from stdin\n"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "c from stdin\n"


def test_lang_names_the_language_of_a_file_without_a_suffix(
    cluster: Cluster, tmp_path: Path
) -> None:
    program = write(tmp_path, "program", C_ECHO)
    stdin = write(tmp_path, "in.txt", "lang\n")
    proc = submit(cluster, program, "--lang", "c", "--stdin", stdin)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "c lang\n"
    # Without --lang it is refused before anything is sent: not parsed as WAT.
    refused = submit(cluster, program, "--stdin", stdin)
    assert refused.returncode == ExitCode.REJECTED
    assert "--lang" in refused.stderr and "expected `(`" not in refused.stderr, refused.stderr


def test_json_prints_the_job_record(cluster: Cluster, tmp_path: Path) -> None:
    proc = submit(cluster, write(tmp_path, "hello.wat", W.hello("json\n")), "--json")
    assert proc.returncode == 0, proc.stderr
    record = JobRecord.model_validate_json(proc.stdout)
    assert record.state is JobState.FINISHED
    assert record.result is not None and record.result.status is RunStatus.OK
    assert record.result.stdout == b"json\n"
    assert cluster.get(record.id)["state"] == "finished"  # the same job the API has


def test_no_wait_prints_the_job_id(cluster: Cluster, tmp_path: Path) -> None:
    proc = submit(cluster, write(tmp_path, "hello.wat", W.hello("later\n")), "--no-wait")
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    assert proc.stdout == job_id + "\n" and job_id
    record = cluster.wait_state(job_id)
    assert record["state"] == "finished" and record["result"]["status"] == "ok", record


def test_the_guests_exit_code_is_the_exit_code(cluster: Cluster, tmp_path: Path) -> None:
    proc = submit(cluster, write(tmp_path, "exit.wat", W.PROC_EXIT.format(code=3)))
    assert proc.returncode == 3, proc.stderr
    assert "status=nonzero_exit" in proc.stderr and "exit=3" in proc.stderr, proc.stderr


def test_a_trap_is_123_with_a_message(cluster: Cluster, tmp_path: Path) -> None:
    proc = submit(cluster, write(tmp_path, "trap.wat", W.UNREACHABLE))
    assert proc.returncode == ExitCode.TRAP, proc.stderr
    assert "status=trap" in proc.stderr and "trap=unreachable" in proc.stderr, proc.stderr
    no_traceback(proc)


def test_a_compile_error_is_122_with_the_compilers_message_and_no_run_figures(
    cluster: Cluster, tmp_path: Path
) -> None:
    proc = submit(cluster, write(tmp_path, "bad.c", "int main(void) { return nope; }\n"))
    assert proc.returncode == ExitCode.COMPILE_ERROR, proc.stderr
    assert "nope" in proc.stderr, proc.stderr
    summary = next(line for line in proc.stderr.splitlines() if "status=" in line)
    assert re.fullmatch(r"\[warden\] job \S+ finished: status=compile_error "
                        r"compile=(\d+\.\d\dms|cached)", summary), summary


@pytest.mark.parametrize(
    ("name", "content", "args", "message"),
    [
        ("missing.wasm", None, (), "cannot read module"),
        ("missing.py", None, (), "cannot read source"),
        ("prog.txt", "print(1)", (), "give --lang"),
        ("hello.wat", W.HELLO, ("--memory", "lots"), "not a size"),
        ("hello.wat", W.HELLO, ("--flag", "-O2"), "compiler_flags apply to source jobs only"),
        ("junk.wasm", b"\0asm\x01\0\0\0not a module", (), "(422 invalid-module)"),
        ("broken.wat", W.WAT_SYNTAX_ERROR, (), "The module is invalid"),
        ("prog.cob", "DISPLAY 'HI'.", ("--lang", "cobol"), "Unknown language"),
        ("hello.wat", W.HELLO, ("--stdin", "/nonexistent/stdin"), "cannot read stdin"),
    ],
)
def test_a_bad_file_is_125_with_a_message(
    cluster: Cluster, tmp_path: Path, name: str, content: str | bytes | None,
    args: tuple[str, ...], message: str,
) -> None:
    path = tmp_path / name if content is None else write(tmp_path, name, content)
    proc = submit(cluster, path, *args)
    assert proc.returncode == ExitCode.REJECTED, (proc.returncode, proc.stderr)
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("warden: ") and proc.stdout == "", proc
    no_traceback(proc)


def test_an_unreachable_api_is_one_clear_line(cluster: Cluster, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = submit(cluster, write(tmp_path, "hello.wat", W.HELLO), "--url", url)
    assert proc.returncode == ExitCode.API
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"warden: cannot reach the Warden API at {url}"), proc.stderr


# -- the options of `warden run` -----------------------------------------------------------
def test_submit_takes_the_grant_options_of_run(cluster: Cluster, tmp_path: Path) -> None:
    stdin = write(tmp_path, "in.txt", "from stdin\n")
    data = write(tmp_path, "data.txt", "granted\n")
    proc = submit(cluster, FIXTURES / "env_args.wasm", "--arg", "x", "--env", "K=V",
                  "--stdin", stdin, "--file", f"input.txt={data}", "--scratch", "1MiB",
                  "--json")
    record = JobRecord.model_validate_json(proc.stdout)
    assert record.result is not None and record.result.status is RunStatus.NONZERO_EXIT
    assert proc.returncode == 7 == record.result.exit_code, proc.stderr
    out = record.result.stdout.decode()
    assert "ENV K=V" in out and out.endswith("from stdin\n"), out


def test_submit_takes_the_limit_options_of_run(cluster: Cluster, tmp_path: Path) -> None:
    loop = write(tmp_path, "loop.wat", W.LOOP)
    proc = submit(cluster, loop, "--fuel", "10000", "--json")
    assert proc.returncode == ExitCode.LIMIT, proc.stderr
    record = JobRecord.model_validate_json(proc.stdout)
    assert record.result is not None and record.result.status is RunStatus.FUEL_EXHAUSTED
    proc = submit(cluster, loop, "--timeout", "50ms", "--memory", "1MiB", "--stack", "64KiB")
    assert proc.returncode == ExitCode.LIMIT and "status=wall_timeout" in proc.stderr
    proc = submit(cluster, write(tmp_path, "deep.wat", W.RECURSE), "--stack", "64KiB")
    assert proc.returncode == ExitCode.LIMIT and "trap=stack_overflow" in proc.stderr


def test_submit_help_lists_every_suffix_and_the_exit_codes(cluster: Cluster) -> None:
    proc = warden(cluster, "submit", "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for language in LANGUAGES.values():
        assert re.search(rf"{re.escape(Path(language.file_name).suffix)}\b", proc.stdout)
    for option in ("--arg", "--env", "--file", "--scratch", "--fuel", "--memory",
                   "--timeout", "--stack", "--flag", "--stdin", "--lang"):
        assert option in proc.stdout, option
    text = " ".join(proc.stdout.split())
    assert all(f"{int(code)}: {' '.join(m.split())}" in text for code, m in MEANING.items())


# -- warden job ----------------------------------------------------------------------------
def test_job_get_shows_what_no_wait_submitted(cluster: Cluster, tmp_path: Path) -> None:
    proc = submit(cluster, write(tmp_path, "exit.wat", W.PROC_EXIT.format(code=9)), "--no-wait")
    job_id = proc.stdout.strip()
    shown = warden(cluster, "job", "get", job_id, "--wait", "60s")
    assert shown.returncode == 9, shown.stderr  # as `warden submit` would have exited
    assert f"[warden] job {job_id} finished: status=nonzero_exit exit=9" in shown.stderr
    as_json = warden(cluster, "job", "get", job_id, "--json")
    assert as_json.returncode == 9
    record = JobRecord.model_validate_json(as_json.stdout)
    assert record.id == job_id and record.state is JobState.FINISHED
    assert record.created_at.tzinfo is not None and record.finished_at is not None


def test_job_get_of_an_unknown_id_is_rejected(cluster: Cluster) -> None:
    proc = warden(cluster, "job", "get", "no-such-job")
    assert proc.returncode == ExitCode.REJECTED, proc.stderr
    assert "(404 job-not-found)" in proc.stderr and proc.stderr.count("\n") == 1
    no_traceback(proc)


def test_cancelling_a_finished_job_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    done = submit(cluster, write(tmp_path, "hello.wat", W.HELLO), "--json")
    job_id = JobRecord.model_validate_json(done.stdout).id
    proc = warden(cluster, "job", "cancel", job_id)
    assert proc.returncode == ExitCode.REJECTED, proc.stderr
    assert proc.stderr.startswith(f"warden: cannot cancel job {job_id}: "), proc.stderr
    assert "nothing to cancel" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


@pytest.fixture
def idle(fresh_cluster: Cluster) -> Cluster:
    """An API with no worker: jobs stay queued for as long as a test needs them to."""
    fresh_cluster.start_api()
    return fresh_cluster


def test_a_queued_job_waits_then_cancels(idle: Cluster, tmp_path: Path) -> None:
    job_id = submit(idle, write(tmp_path, "hello.wat", W.HELLO), "--no-wait").stdout.strip()
    waited = warden(idle, "job", "get", job_id, "--wait", "0.5")  # runs out: a 202
    assert waited.returncode == ExitCode.PENDING, waited.stderr
    assert f"job {job_id} is still queued" in waited.stderr, waited.stderr
    cancelled = warden(idle, "job", "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stderr == f"[warden] job {job_id} cancelled\n"
    again = warden(idle, "job", "cancel", job_id, "--json")  # a cancelled job: no change
    assert again.returncode == 0, again.stderr
    assert JobRecord.model_validate_json(again.stdout).state is JobState.CANCELLED
    shown = warden(idle, "job", "get", job_id)
    assert shown.returncode == ExitCode.CANCELLED, shown.stderr
    assert f"[warden] job {job_id} cancelled" in shown.stderr


def test_job_list_pages_newest_first_and_filters_by_state(idle: Cluster, tmp_path: Path) -> None:
    wat = write(tmp_path, "hello.wat", W.HELLO)
    ids = [submit(idle, wat, "--no-wait").stdout.strip() for _ in range(3)]
    assert warden(idle, "job", "cancel", ids[0]).returncode == 0
    first = warden(idle, "job", "list", "--limit", "2")
    assert first.returncode == 0, first.stderr
    assert [line.split()[0] for line in first.stdout.splitlines()] == [ids[2], ids[1]]
    assert first.stdout.splitlines()[0].split()[1] == "queued"
    more = re.fullmatch(r"\[warden\] more: (warden job list .*)\n", first.stderr)
    assert more is not None, first.stderr
    rest = warden(idle, *more.group(1).split()[1:])  # the command it printed, as printed
    assert rest.returncode == 0, rest.stderr
    assert [line.split()[:2] for line in rest.stdout.splitlines()] == [[ids[0], "cancelled"]]
    page = JobList.model_validate_json(warden(idle, "job", "list", "--json").stdout)
    assert [r.id for r in page.jobs if r is not None] == ids[::-1]
    assert page.next_cursor is None
    queued = warden(idle, "job", "list", "--state", "queued", "--json")
    assert [r["id"] for r in json.loads(queued.stdout)["jobs"]] == [ids[2], ids[1]]
    bad = warden(idle, "job", "list", "--state", "lost")
    assert bad.returncode == ExitCode.USAGE and "lost" in bad.stderr


def test_a_full_queue_is_an_api_error_exit_code(idle: Cluster, tmp_path: Path) -> None:
    """fresh_cluster's queue holds 5 jobs; the sixth is a 503 queue-full."""
    wat = write(tmp_path, "hello.wat", W.HELLO)
    for _ in range(5):
        assert submit(idle, wat, "--no-wait").returncode == 0
    proc = submit(idle, wat, "--no-wait")
    assert proc.returncode == ExitCode.API, proc.stderr
    assert "(503 queue-full)" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
