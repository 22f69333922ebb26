"""`warden submit`: files of every kind through a real API and workers, and its exit codes
(the same as `warden run`'s: the guest's own code, 124 for a limit or trap, 125 for
rejected input or an API that cannot be reached)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandboxes.languages.source_runner import SourceRunner
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import JobRecord, JobState, RunStatus
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


def submit(cluster: Cluster, *args: str | Path,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``warden submit ARGS`` in its own process; the API's address comes from the
    cluster's WARDEN_PORT (no --url) unless ``args`` or ``env`` say otherwise."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "submit", *map(str, args)],
        env={**cluster.env, **(env or {})}, cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )


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
    assert refused.returncode == 125
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
    # Without --lang the same file is taken for WAT, and refused.
    assert submit(cluster, program, "--stdin", stdin).returncode == 125


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


def test_a_trap_is_124_with_a_message(cluster: Cluster, tmp_path: Path) -> None:
    proc = submit(cluster, write(tmp_path, "trap.wat", W.UNREACHABLE))
    assert proc.returncode == 124, proc.stderr
    assert "status=trap" in proc.stderr and "trap=unreachable" in proc.stderr, proc.stderr
    no_traceback(proc)


def test_a_compile_error_is_125_with_the_compilers_message(
    cluster: Cluster, tmp_path: Path
) -> None:
    proc = submit(cluster, write(tmp_path, "bad.c", "int main(void) { return nope; }\n"))
    assert proc.returncode == 125, proc.stderr
    assert "nope" in proc.stderr and "status=compile_error" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("name", "content", "args", "message"),
    [
        ("missing.wasm", None, (), "cannot read file"),
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
    assert proc.returncode == 125, (proc.returncode, proc.stderr)
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("warden: ") and proc.stdout == "", proc
    no_traceback(proc)


def test_an_unreachable_api_is_one_clear_line(cluster: Cluster, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = submit(cluster, write(tmp_path, "hello.wat", W.HELLO), "--url", url)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"warden: cannot reach the Warden API at {url}"), proc.stderr
