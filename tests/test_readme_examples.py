"""The README's examples, run as written against a live ``warden up``.

The convention (also stated in an HTML comment in README.md, next to the quick start):

- Every fenced ```console block is run; ```bash/```sh/```shell blocks are not (install
  steps, long-running commands) and so may hold no ``warden run`` or ``warden submit``.
- A line starting with ``$ `` is one command, run by bash from the repository root; a line
  ending in ``\\`` continues it. The lines after it, up to the next ``$ ``, are what it
  prints, stdout and stderr together (what a terminal shows), where ``...`` stands for any
  text; a command with no such lines has its output unchecked.
- A command exits 0 unless its trailing comment says ``[exit N]``.
- The service listens on a free port with a temporary ``WARDEN_DATA_DIR`` (set through the
  ``WARDEN_*`` environment, which ``warden submit`` reads); ``localhost:8000`` and
  ``127.0.0.1:8000`` in a command are rewritten to that port.

Beyond running them: every file a command names exists in the repository (and is not
git-ignored), every file of ``examples/`` is used by some example, every language has a
hello the README runs, and the tables of "Job requests" match ``sandboxes/schema.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sandboxes.languages.registry import LANGUAGES
from sandboxes.schema import (
    DEFAULT_SCRATCH_BYTES,
    LIMIT_BOUNDS,
    MAX_ARG_BYTES,
    MAX_ARGS,
    MAX_COMPILER_FLAGS,
    MAX_ENV,
    MAX_FILES,
    MAX_FILES_TOTAL_BYTES,
    MAX_SCRATCH_BYTES,
    MAX_SCRATCH_ENTRIES,
    MAX_STDIN_BYTES,
    Grants,
    JobSubmission,
    Limits,
)
from sandboxes.units import parse_duration, parse_size
from workers.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLES_DIR = ROOT / "examples"

_FENCE = re.compile(r"^\s*```\s*([\w+-]*)\s*$")
_EXIT_MARK = re.compile(r"#[^\n]*\[exit (\d+)\]\s*$")
_REPO_PATH = re.compile(r"^[\w.+-]+(?:/[\w.+-]+)+$")
_DEFAULT_ADDRESS = re.compile(r"\b(?:localhost|127\.0\.0\.1):8000\b")
_SHELL_TAGS = ("bash", "sh", "shell", "zsh")


@dataclass(frozen=True)
class Example:
    line: int  # 1-based line of the command in the README
    command: str  # as written, continuation lines included
    expected: str | None  # what it prints (``...``: any text); None: not checked
    exit_code: int

    @property
    def id(self) -> str:
        return f"L{self.line}-" + "-".join(self.command.split()[:3])


def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(info tag, 1-based line of the first line inside, lines) of every fenced block."""
    blocks: list[tuple[str, int, list[str]]] = []
    tag: str | None = None
    start, body = 0, list[str]()
    for number, line in enumerate(text.splitlines(), 1):
        fence = _FENCE.match(line)
        if tag is None and fence:
            tag, start, body = fence.group(1), number + 1, []
        elif tag is not None and line.strip() == "```":
            blocks.append((tag, start, body))
            tag = None
        elif tag is not None:
            body.append(line)
    assert tag is None, f"README: the block opened on line {start - 1} is never closed"
    return blocks


def console_examples(text: str) -> list[Example]:
    """The commands of every ```console block, with their expected output and exit code."""
    examples: list[Example] = []
    for tag, start, lines in fenced_blocks(text):
        if tag != "console":
            continue
        i = 0
        while i < len(lines):
            line = lines[i]
            assert line.startswith("$ "), (
                f"README line {start + i}: a console block starts with a `$ ` command: {line!r}"
            )
            first = start + i
            command = [line[2:]]
            while command[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command.append(lines[i])
            i += 1
            output: list[str] = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i].rstrip())
                i += 1
            while output and not output[-1]:
                output.pop()
            text_of = "\n".join(command)
            mark = _EXIT_MARK.search(command[-1])
            examples.append(Example(
                line=first, command=text_of, expected="\n".join(output) if output else None,
                exit_code=int(mark.group(1)) if mark else 0,
            ))
    return examples


def matches(expected: str, actual: str) -> bool:
    """``actual`` (trailing spaces and blank lines aside) is ``expected``, where each
    ``...`` stands for any text, newlines included."""
    shown = "\n".join(line.rstrip() for line in actual.splitlines()).rstrip("\n")
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, shown, re.DOTALL) is not None


def repo_paths(command: str) -> list[str]:
    """The arguments of ``command`` that name files of the repository (relative paths)."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError as exc:
        raise AssertionError(f"not a shell command: {command!r} ({exc})") from None
    return [w for w in words if _REPO_PATH.fullmatch(w) and not w.startswith(".")]


README_TEXT = README.read_text()
EXAMPLES = console_examples(README_TEXT)


# -- the convention itself -------------------------------------------------------------------


def test_the_parser_reads_commands_output_continuations_and_exit_marks() -> None:
    text = (
        "intro\n```console\n$ warden run a.c\nhello\n...\n$ curl -s x \\\n     -d '{}'\n"
        "$ warden run b.c   # fails [exit 3]\n\n```\n```bash\n$ not run\n```\n"
    )
    assert console_examples(text) == [
        Example(line=3, command="warden run a.c", expected="hello\n...", exit_code=0),
        Example(line=6, command="curl -s x \\\n     -d '{}'", expected=None, exit_code=0),
        Example(line=8, command="warden run b.c   # fails [exit 3]", expected=None,
                exit_code=3),
    ]
    with pytest.raises(AssertionError, match="starts with a `\\$ ` command"):
        console_examples("```console\nhello\n```\n")


def test_the_matcher_takes_ellipses_for_any_text_and_nothing_else() -> None:
    assert matches("hello\n[warden] status=ok ...", "hello\n[warden] status=ok time=1ms  \n\n")
    assert matches('{"id":"...","state":"finished",...}', '{"id":"x1","state":"finished","a":1}')
    assert matches("a\n...\nz", "a\nb\nc\nz")
    assert not matches("hello", "hello world")
    assert not matches("hello", "say hello")
    assert not matches("a ... z", "a z")  # the spaces around ... are literal
    assert not matches("5", "6")


# -- what the README says, without a service -----------------------------------------------


def test_the_readme_has_runnable_examples_and_documents_the_convention() -> None:
    assert len(EXAMPLES) >= 10, EXAMPLES
    assert any(e.exit_code != 0 for e in EXAMPLES), "no failing example shows the convention"
    assert "tests/test_readme_examples.py" in README_TEXT  # the convention's comment
    commands = [e.command for e in EXAMPLES]
    assert any(c.startswith("warden submit ") for c in commands)
    assert any(c.startswith("warden run ") for c in commands)
    assert any(c.startswith("curl ") for c in commands)


def test_shell_blocks_that_are_not_run_hold_no_run_or_submit_example() -> None:
    """A `warden run`/`submit` example is what went stale before: it must be run."""
    for tag, start, lines in fenced_blocks(README_TEXT):
        if tag not in _SHELL_TAGS:
            continue
        for offset, line in enumerate(lines):
            words = line.removeprefix("$ ").split()
            assert words[:2] not in (["warden", "run"], ["warden", "submit"]), (
                f"README line {start + offset}: {line.strip()!r} is in a ```{tag} block, "
                "which the README test does not run: put it in a ```console block"
            )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_readme_commands_name_only_files_the_repository_has(example: Example) -> None:
    for path in repo_paths(example.command):
        assert (ROOT / path).is_file(), f"README line {example.line}: no file {path}"
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode != 0, f"README line {example.line}: {path} is git-ignored"


def test_every_example_file_is_used_by_the_readme() -> None:
    used = {p for e in EXAMPLES for p in repo_paths(e.command)}
    files = {str(p.relative_to(ROOT)) for p in EXAMPLES_DIR.iterdir() if p.is_file()}
    assert files, "examples/ is empty"
    assert files <= used, f"examples no README command runs: {sorted(files - used)}"


def test_every_language_has_a_hello_the_readme_runs() -> None:
    used = {p for e in EXAMPLES for p in repo_paths(e.command)}
    for language in LANGUAGES.values():
        hello = f"examples/hello{Path(language.file_name).suffix}"
        assert hello in used, f"{language.id}: no README example runs {hello}"
        shown = [e for e in EXAMPLES if hello in repo_paths(e.command)]
        assert any(e.expected and f"hello from {language.name}" in e.expected for e in shown), (
            f"{language.id}: the README does not show what {hello} prints"
        )
    assert "examples/hello.wat" in used


# -- the "Job requests" section against the schema ----------------------------------------


def section(heading: str) -> str:
    """The README text under ``heading`` (a ## line), up to the next ## heading."""
    found = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", README_TEXT,
                      re.MULTILINE | re.DOTALL)
    assert found is not None, f"README has no '## {heading}' section"
    return found.group(1)


def table(text: str, first_header: str) -> dict[str, list[str]]:
    """The rows of the Markdown table whose first header cell is ``first_header``, by
    their first cell (backticks removed)."""
    rows: dict[str, list[str]] = {}
    inside = False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|"):
            if inside:
                break
            continue
        if not inside:
            inside = cells[0] == first_header
            continue
        if set(cells[0]) <= {"-", ":", " "}:
            continue
        rows[cells[0].strip("`")] = cells[1:]
    assert rows, f"no table with a '{first_header}' column"
    return rows


JOB_REQUESTS = "Job requests: `POST /v1/jobs`"


def figure(cell: str) -> float:
    """A table figure: ``10,000,000,000``, ``256 MiB`` or ``10 s``."""
    text = cell.replace(",", "").replace(" ", "")
    if text.isdigit():
        return int(text)
    try:
        return parse_size(text)
    except ValueError:
        return parse_duration(text)


def human_size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n:,}"


def test_the_limits_table_is_limit_bounds() -> None:
    rows = table(section(JOB_REQUESTS), "limit")
    assert set(rows) == set(LIMIT_BOUNDS) == set(Limits.model_fields), sorted(rows)
    for name, bound in LIMIT_BOUNDS.items():
        default, maximum, minimum = rows[name][:3]
        assert (figure(default), figure(maximum), figure(minimum)) == (
            bound.default, bound.maximum, bound.minimum
        ), (name, rows[name])
    # Languages whose defaults differ say so in their limit's row.
    for language in LANGUAGES.values():
        for name, value in language.default_limits.items():
            row = " ".join(rows[name])
            assert f"`{language.id}`" in row and f"{value:,}" in row, (language.id, name, row)


def test_the_fields_table_is_the_submission_schema() -> None:
    rows = table(section(JOB_REQUESTS), "field")
    fields = {n for n in JobSubmission.model_fields if n != "grants"}
    fields |= {f"grants.{n}" for n in Grants.model_fields}
    assert set(rows) == fields, (sorted(set(rows) - fields), sorted(fields - set(rows)))
    bounds = {
        "compiler_flags": [f"{MAX_COMPILER_FLAGS}"],
        "grants.args": [f"{MAX_ARGS}", f"{MAX_ARG_BYTES}"],
        "grants.env": [f"{MAX_ENV}", f"{MAX_ARG_BYTES}"],
        "grants.stdin": [human_size(MAX_STDIN_BYTES)],
        "grants.files": [f"{MAX_FILES}", human_size(MAX_FILES_TOTAL_BYTES)],
        "grants.scratch": [human_size(DEFAULT_SCRATCH_BYTES), human_size(MAX_SCRATCH_BYTES),
                           f"{MAX_SCRATCH_ENTRIES:,}"],
    }
    for name, figures in bounds.items():
        row = " ".join(rows[name])
        for shown in figures:  # the figure itself, not part of a longer number
            found = re.search(rf"(?<![\d.])(?<!\d,){re.escape(shown)}(?!\d|,\d)", row)
            assert found, (name, shown, row)


# -- running them ----------------------------------------------------------------------------


@dataclass
class Live:
    """A `warden up` for the examples, and the environment their commands run in."""

    env: dict[str, str]
    port: int
    log: Path

    def command(self, text: str) -> str:
        return _DEFAULT_ADDRESS.sub(f"127.0.0.1:{self.port}", text)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"warden up exited: {log.read_text(errors='replace')}"
            try:
                r = http.get("/readyz")
                if r.status_code == 200 and r.json()["workers"] >= 1:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"warden up not ready: {log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("readme")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "warden"  # `warden` is this checkout's, whatever else is on PATH
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m service.cli "$@"\n')
    shim.chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "WARDEN_DATA_DIR": str(tmp / "data"),
        "WARDEN_PORT": str(port),
        "WARDEN_WORKERS": "1",
    })
    # What scripts/install.sh does before `warden up`: the toolchains (machine-wide, built
    # once) and the interpreters compiled into this data dir.
    warm = subprocess.run(["warden", "warm"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=1800, check=False)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    log = tmp / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["warden", "up"], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(proc, port, log, timeout_s=120)
        yield Live(env=env, port=port, log=log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.slow  # the first one: `warden warm` into a new data dir (~30 s), then `warden up`
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_readme_example_runs_as_written(example: Example, live: Live) -> None:
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", live.command(example.command)],
        env=live.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=300, check=False,
    )
    shown = proc.stdout.decode(errors="replace")
    where = f"README line {example.line}: {example.command}"
    assert proc.returncode == example.exit_code, (
        f"{where}\nexited {proc.returncode}, the README says {example.exit_code}:\n{shown}"
        f"\n--- warden up ---\n{live.log_tail()}"
    )
    if example.expected is not None:
        assert matches(example.expected, shown), (
            f"{where}\nprinted:\n{shown}\nthe README shows:\n{example.expected}"
        )
