"""WASI preview1 filesystem conformance: what a guest sees under Warden vs plain wasmtime.

The C programs in ``tests/fixtures/wasi_fs/`` (``posix.c``: libc calls; ``raw.c``: the
preview1 functions themselves) print one deterministic line per filesystem operation: the
result, the errno as a number and a name, and the data involved. Every scenario runs twice
with the same grants: directly in wasmtime-py (the REFERENCE: wasmtime's own host-directory
WASI, granted files preopened read-only at ``/`` and a scratch dir read-write at ``/tmp``)
and through ``Sandbox.run`` (WARDEN). Stdout and stderr must match line for line, except
where a line is covered by:

* ``ACCEPTED``: places where Warden may differ on purpose (no symlinks, an fd cap, a
  whole-path length limit, facts of the reference's host filesystem). Optional: a Warden that
  behaves exactly like wasmtime passes too.
* ``KNOWN_GAPS`` / ``KNOWN_STATUS_GAPS``: places where Warden differs although it should
  not, listed to keep the suite usable while they are fixed. Each entry must still be seen in
  its cases, so fixing a gap fails the test until the entry goes. Keep these short.

Warden runs core modules on its own in-memory filesystem (sandboxes/wasi/memfs.py) instead
of wasmtime's host directories; this file is the proof that it behaves like wasmtime for what
programs do. The quota is Warden's own
(the reference has none): those scenarios have their own tests below.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path

import pytest
import wasmtime

from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, KiB, Limits, MiB, RunResult, RunStatus, ScratchGrant
from sandboxes.settings import Settings
from tests.conftest import FIXTURES

PROGRAM_DIR = FIXTURES / "wasi_fs"
PROGRAMS = ("posix", "raw")
GRANTED = {"input.txt": b"granted data\n", "empty.txt": b"", "data/nested.txt": b"nested\n"}
STDIN = b"stdin line 1\nline 2\n"
ARGV0 = "main.wasm"  # what Warden passes as argv[0]
QUOTA = 16 * MiB  # room for every scenario but the quota ones
CHUNK = 64 * KiB  # posix.c's quota scenarios write 16 chunks of this


class Profile(Enum):
    """Which grants a run gets (Warden takes different paths for each)."""

    FULL = "full"  # files at / (fd 3) and scratch at /tmp (fd 4)
    FILES = "files"  # files only: nothing writable but stdout/stderr
    SCRATCH = "scratch"  # scratch only: /tmp is fd 3
    NONE = "none"  # no preopens at all

    @property
    def files(self) -> bool:
        return self in (Profile.FULL, Profile.FILES)

    @property
    def scratch(self) -> bool:
        return self in (Profile.FULL, Profile.SCRATCH)


@dataclass(frozen=True)
class Case:
    program: str
    scenario: str
    profile: Profile = Profile.FULL
    traps: bool = False  # wasmtime ends the run with a trap (invalid flags, bad pointers)

    @property
    def id(self) -> str:
        return f"{self.program}:{self.scenario}[{self.profile.value}]"


def _cases(program: str, names: str, *profiles: Profile, traps: bool = False) -> list[Case]:
    return [Case(program, n, p, traps) for n in names.split() for p in profiles or [Profile.FULL]]


FULL = Profile.FULL
WITH_FILES = (Profile.FULL, Profile.FILES)
EVERY_PROFILE = tuple(Profile)
CASES: list[Case] = [
    *_cases("posix", "open_flags rw_seek truncate mkdir rmdir unlink rename readdir long_names"),
    *_cases("posix", "long_paths deep_nesting symlinks hardlinks fcntl times fadvise_fallocate"),
    *_cases("posix", "bad_fds stdio_files"),
    *_cases("posix", "readonly stat", *WITH_FILES),
    *_cases("posix", "escapes stdio access fd_limits", *EVERY_PROFILE),
    *_cases("raw", "filestat raw_readdir path_open_flags renumber set_rights set_flags"),
    *_cases("raw", "seek_tell sync close_preopen symlinks dir_fd_ops path_limits iovecs"),
    *_cases("raw", "prestat fdstat fd_numbers stdout_iovecs path_bytes poll_fd", *EVERY_PROFILE),
    *_cases("raw", "trap_whence trap_advice trap_oflags trap_lookupflags", traps=True),
    *_cases("raw", "trap_fdflags trap_set_flags trap_fstflags trap_rights oob_path", traps=True),
    *_cases("raw", "oob_result", traps=True),
    *_cases(
        "raw", "oob_stdout_buf oob_stdout_iovs oob_read", FULL, Profile.FILES, Profile.NONE,
        traps=True,
    ),
]
# Scenarios with tests of their own (the quota is Warden's; the reference has none).
OWN_TESTS = {"posix": {"quota", "quota_paced", "quota_truncate"}, "raw": {"deep_leftover"}}


# -- divergences ---------------------------------------------------------------------------

Allowed = Callable[[str, str], bool]  # (reference line, Warden line) -> acceptable?


@dataclass(frozen=True)
class Divergence:
    cases: str  # regex, full match on Case.id
    reference: str  # regex, full match on the reference's line
    allowed: Allowed  # what Warden may print instead
    why: str


def _op(line: str) -> str:
    """The operation part of a line: before " -> ", or before a data dump's " n=..."."""
    if " -> " in line:
        return line.split(" -> ", 1)[0]
    return re.split(r" n=\d+ data=", line, maxsplit=1)[0]


def refused(*errnos: str) -> Allowed:
    """Warden's line is the same operation failing with one of ``errnos`` ("44 ENOENT")."""
    pattern = "|".join(re.escape(e) for e in errnos)

    def allowed(ref: str, warden: str) -> bool:
        op = re.escape(_op(ref))
        return re.fullmatch(rf"{op} -> (-1 )?errno=({pattern})", warden) is not None

    return allowed


def matches(pattern: str) -> Allowed:
    return lambda _ref, warden: re.fullmatch(pattern, warden) is not None


def listing_subset(ref: str, warden: str) -> bool:
    """An ``ls`` line naming some of the reference's entries (links refused: a name that was
    a link may be a regular file created through where the link would have been)."""
    r, w = (re.fullmatch(r"(ls \S+) -> n=\d+((?: \S+)*)", line) for line in (ref, warden))

    def names(entries: str) -> set[str]:
        return {e.rsplit(":", 1)[0] for e in entries.split()}

    return bool(r and w and r[1] == w[1] and names(w[2]) <= names(r[2]))


def same_but_dir_nlink(ref: str, warden: str) -> bool:
    def strip(line: str) -> str:
        return re.sub(r"(type=DIR(?:ECTORY)?\b.*?) nlink=\d+", r"\1 nlink=?", line)

    return strip(ref) == strip(warden)


def either(*alternatives: Allowed) -> Allowed:
    return lambda ref, warden: any(a(ref, warden) for a in alternatives)


def long_path_refused(ref: str, warden: str) -> bool:
    """A path of 4096 bytes or more refused whole (PATH_MAX applied to the entire path)."""
    m = re.search(r"len=(\d+)", ref)
    return bool(m and int(m[1]) >= 4096) and refused("37 ENAMETOOLONG", "44 ENOENT")(ref, warden)


NOT_SUPPORTED = ("58 ENOTSUP", "63 EPERM", "52 ENOSYS")
LINK_OPS = r"(symlink|link|linkat|path_symlink|path_link) .*"

ACCEPTED: tuple[Divergence, ...] = (
    Divergence(
        r".*", LINK_OPS, refused(*NOT_SUPPORTED),
        "Warden may refuse symlink() and link() (path_symlink/path_link) outright",
    ),
    Divergence(
        r"(posix|raw):symlinks\[.*\]", r".*",
        either(refused("44 ENOENT", "54 ENOTDIR", *NOT_SUPPORTED), listing_subset),
        "without symlinks, every later use of a link in the symlink scenarios fails: the "
        "link does not exist (ENOENT), and listings lack the LNK entries",
    ),
    Divergence(
        r"posix:hardlinks\[.*\]", r".*",
        either(
            refused("44 ENOENT", *NOT_SUPPORTED), listing_subset,
            matches(r"stat \S+ -> 0 type=REG size=\d+ nlink=1 perm=000"),
            matches(r"cat \S+ n=\d+ data=.*"),
        ),
        "without hard links, the second name never exists and nlink stays 1",
    ),
    Divergence(
        r"raw:dir_fd_ops\[.*\]", r"path_link .*|path_unlink_file sub/f2 .*",
        refused("44 ENOENT", *NOT_SUPPORTED),
        "path_link refused (as above)",
    ),
    Divergence(
        r"posix:fd_limits\[.*\]",
        r"open \S+ x300 .*|close x300 .*|opendir x300 .*|read last of 300 .*",
        either(
            matches(r"open \S+ x300( and append)? ok=(6[4-9]|[7-9]\d|[12]\d\d) "
                    r"first_errno=(33 EMFILE|41 ENFILE) .*"),
            matches(r"close x300 ok=(6[4-9]|[7-9]\d|[12]\d\d)"),
            matches(r"opendir x300 ok=(6[4-9]|[7-9]\d|[12]\d\d)"),
            matches(r"read last of 300 7 -> -1 errno=8 EBADF"),
        ),
        "Warden may cap open fds per run (at 64 or more; wasmtime has no cap: 300 opens of one "
        "file all succeed): opens past the cap fail with EMFILE/ENFILE",
    ),
    Divergence(
        r"posix:long_paths\[.*\]|raw:path_limits\[.*\]", r".*len=\d+.*", long_path_refused,
        "Warden may refuse any path of 4096 bytes or more. wasmtime (cap-std) applies the "
        "kernel's PATH_MAX to the path it passes on, which for mkdir/unlink/rename is only the "
        "parent: mkdir of a 4159-byte path succeeds, stat of it fails",
    ),
    Divergence(
        r"posix:long_paths\[.*\]|raw:path_limits\[.*\]",
        r"deepest mkdir level=21|(made|removed) nested dirs=65",
        matches(r"deepest mkdir level=20|(made|removed) nested dirs=64"),
        "the same, counted: one level fewer exists",
    ),
    Divergence(
        r".*", r".*type=DIR.* nlink=\d+.*", same_but_dir_nlink,
        "a directory's nlink comes from the reference's host filesystem (2 + subdirectories on "
        "ext4, xfs and tmpfs, always 1 on btrfs); Warden may report 2 + subdirectories anywhere",
    ),
    Divergence(
        r"posix:stat\[.*\]", r"stat f vs /input.txt same_dev=1", matches(r".* same_dev=0"),
        "whether / and /tmp share st_dev depends on where their host dirs are",
    ),
)

# Gaps of the Warden before its in-memory filesystem (9599f04, wasmtime's WASI with Warden's
# own poll_oneoff and stdio fd_write), all gone with cd8423b: poll_oneoff reported every fd
# subscription ready with nbytes=0 and never EBADF; without a scratch grant fd_write wrote
# every iovec to stdout/stderr and answered EFAULT (no trap) for out-of-bounds pointers.
KNOWN_GAPS: tuple[Divergence, ...] = ()


@dataclass(frozen=True)
class StatusGap:
    cases: str  # regex, full match on Case.id
    status: RunStatus  # what the current Warden ends with instead
    why: str


KNOWN_STATUS_GAPS: tuple[StatusGap, ...] = ()


def _compare(case: Case, ref: list[str], warden: list[str]) -> tuple[list[str], set[Divergence]]:
    """Mismatching lines (as messages) and the divergence entries that excused others."""
    rules = [d for d in (*ACCEPTED, *KNOWN_GAPS) if re.fullmatch(d.cases, case.id)]
    problems: list[str] = []
    used: set[Divergence] = set()
    for i in range(max(len(ref), len(warden))):
        r = ref[i] if i < len(ref) else "<missing>"
        w = warden[i] if i < len(warden) else "<missing>"
        if r == w:
            continue
        rule = next(
            (d for d in rules if re.fullmatch(d.reference, r) and d.allowed(r, w)), None
        )
        if rule is None:
            problems.append(f"line {i + 1}:\n  reference: {r}\n  warden:    {w}")
        else:
            used.add(rule)
    return problems, used


# -- running ---------------------------------------------------------------------------------


@dataclass
class Output:
    stdout: str
    stderr: str
    trapped: bool = False
    exit_code: int | None = None
    lines: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = self.stdout.splitlines()


@cache
def wasm(program: str) -> bytes:
    return (PROGRAM_DIR / f"{program}.wasm").read_bytes()


class Reference:
    """wasmtime-py's own WASI, configured like Warden's grants, with nothing of Warden."""

    def __init__(self) -> None:
        self.engine = wasmtime.Engine()
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.modules = {p: wasmtime.Module(self.engine, wasm(p)) for p in PROGRAMS}

    def run(self, program: str, args: list[str], profile: Profile, workdir: Path) -> Output:
        workdir.mkdir(parents=True)
        try:
            return self._run(program, args, profile, workdir)
        finally:  # rm, not rmtree: deep_leftover's tree is deeper than Python's recursion
            subprocess.run(["rm", "-rf", str(workdir)], check=True)

    def _run(self, program: str, args: list[str], profile: Profile, workdir: Path) -> Output:
        wasi = wasmtime.WasiConfig()
        wasi.argv = [ARGV0, *args]
        (workdir / "stdin").write_bytes(STDIN)
        wasi.stdin_file = str(workdir / "stdin")
        wasi.stdout_file = str(workdir / "stdout")
        wasi.stderr_file = str(workdir / "stderr")
        # wasmtime-py 50's preopen_dir(host, guest, fs_mutable) has no DirPerms/FilePerms:
        # False is read-only dirs and files, True read-write. Same order as Warden: / first.
        if profile.files:
            files = workdir / "files"
            for name, data in GRANTED.items():
                (files / name).parent.mkdir(parents=True, exist_ok=True)
                (files / name).write_bytes(data)
            wasi.preopen_dir(str(files), "/", False)
        if profile.scratch:
            (workdir / "scratch").mkdir()
            wasi.preopen_dir(str(workdir / "scratch"), "/tmp", True)
        store = wasmtime.Store(self.engine)
        store.set_wasi(wasi)
        trapped, code = False, None
        try:
            instance = self.linker.instantiate(store, self.modules[program])
            start = instance.exports(store)["_start"]
            assert isinstance(start, wasmtime.Func)
            start(store)
            code = 0
        except wasmtime.ExitTrap as exit_:
            code = exit_.code
        except (wasmtime.Trap, wasmtime.WasmtimeError):
            trapped = True
        return Output(
            (workdir / "stdout").read_text(errors="replace"),
            (workdir / "stderr").read_text(errors="replace"),
            trapped,
            code,
        )


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference()


def warden_run(
    sandbox: Sandbox, program: str, scenario: str, profile: Profile, quota: int = QUOTA
) -> RunResult:
    grants = Grants(
        files=GRANTED if profile.files else {},
        scratch=ScratchGrant(quota_bytes=quota) if profile.scratch else None,
        stdin=STDIN,
        args=[scenario],
    )
    return sandbox.run(wasm(program), Limits(wall_time_s=10), grants)


def _text(data: bytes) -> str:
    return data.decode(errors="replace")


# -- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matches_wasmtime(
    case: Case, reference: Reference, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Warden's guest sees the filesystem wasmtime's does, line for line."""
    ref = reference.run(case.program, [case.scenario], case.profile, tmp_path / "ref")
    assert ref.lines[0] == f"== {case.scenario}", ref.stdout  # the scenario exists
    if case.traps:
        assert ref.trapped and ref.lines[-1].startswith("about to "), ref.stdout
    else:
        assert not ref.trapped and ref.exit_code == 0 and ref.lines[-1] == "== end", ref.stdout
    result = warden_run(sandbox, case.program, case.scenario, case.profile)

    problems, used = _compare(case, ref.lines, _text(result.stdout).splitlines())
    err_problems, err_used = _compare(
        case, ref.stderr.splitlines(), _text(result.stderr).splitlines()
    )
    problems += [f"stderr {p}" for p in err_problems]
    expected = RunStatus.TRAP if case.traps else RunStatus.OK
    status_gap = next((g for g in KNOWN_STATUS_GAPS if re.fullmatch(g.cases, case.id)), None)
    if status_gap is not None:
        if result.status is expected:
            problems.append(f"status gap fixed, remove it from KNOWN_STATUS_GAPS: {status_gap.why}")
        expected = status_gap.status
    if result.status is not expected:
        problems.append(f"status: wasmtime {expected.value}, warden {result.status.value} "
                        f"({result.message})")
    fixed = {d for d in KNOWN_GAPS if re.fullmatch(d.cases, case.id)} - used - err_used
    problems += [f"known gap no longer seen, remove it from KNOWN_GAPS: {d.why}" for d in fixed]
    assert not problems, f"{case.id} differs:\n" + "\n".join(problems)


def test_every_scenario_is_tested(reference: Reference, tmp_path: Path) -> None:
    """A scenario added to a program without a case here would never run."""
    for program in PROGRAMS:
        listed = reference.run(program, ["--list"], Profile.NONE, tmp_path / program).lines
        tested = {c.scenario for c in CASES if c.program == program} | OWN_TESTS[program]
        assert sorted(listed) == sorted(tested)


def _write_totals(lines: list[str]) -> list[int]:
    found = (re.fullmatch(r"write chunk=\d+ -> \d+ total=(\d+)", line) for line in lines)
    return [int(m[1]) for m in found if m]


_QUOTA_REFUSAL = r"write chunk=\d+ -> -1 errno=(19 EDQUOT|51 ENOSPC|22 EFBIG) total=\d+"


def _check_stopped_at_quota(ref: Output, result: RunResult, quota: int) -> None:
    """Stopped with scratch_limit, having printed what wasmtime printed up to then (a write
    refused for the quota excepted), and never holding more than quota + one write."""
    assert result.status is RunStatus.SCRATCH_LIMIT, result
    lines = _text(result.stdout).splitlines()
    refused_from = next(
        (i for i, line in enumerate(lines) if re.fullmatch(_QUOTA_REFUSAL, line)), len(lines)
    )
    assert lines[:refused_from] == ref.lines[:refused_from]
    assert all(re.fullmatch(_QUOTA_REFUSAL, line) for line in lines[refused_from:]), lines
    totals = _write_totals(lines[:refused_from])
    assert totals, "stopped before the first write"
    assert totals[-1] <= quota + CHUNK, f"kept {totals[-1]} bytes with a {quota}-byte quota"
    assert totals[-1] < 16 * CHUNK  # it did not get to write everything


def test_quota_paced(reference: Reference, sandbox: Sandbox, tmp_path: Path) -> None:
    """1 MiB in 64 KiB chunks, 20 ms apart, into a 256 KiB quota: stopped near the quota."""
    ref = reference.run("posix", ["quota_paced"], Profile.FULL, tmp_path / "ref")
    assert _write_totals(ref.lines)[-1] == 16 * CHUNK  # the reference has no quota
    quota = 256 * KiB
    _check_stopped_at_quota(ref, warden_run(sandbox, "posix", "quota_paced", FULL, quota), quota)


def test_quota_burst(reference: Reference, sandbox: Sandbox, tmp_path: Path) -> None:
    """The same 1 MiB without pauses: the quota must hold at the write, not at a later scan
    (the Warden before cd8423b scanned every 10 ms and often let the whole burst through)."""
    ref = reference.run("posix", ["quota"], Profile.FULL, tmp_path / "ref")
    quota = 256 * KiB
    _check_stopped_at_quota(ref, warden_run(sandbox, "posix", "quota", FULL, quota), quota)


def test_quota_counts_sparse_size(reference: Reference, sandbox: Sandbox, tmp_path: Path) -> None:
    """A 1 TiB sparse file (ftruncate, or pwrite at 2^40) is over any quota: Warden stops the
    run or refuses the call, and never reports having it."""
    ref = reference.run("posix", ["quota_truncate"], Profile.FULL, tmp_path / "ref")
    assert "ftruncate sparse 2^40 -> 0" in ref.lines  # wasmtime (and the host fs) allow it
    result = warden_run(sandbox, "posix", "quota_truncate", FULL, quota=1 * MiB)
    lines = _text(result.stdout).splitlines()
    if result.status is RunStatus.SCRATCH_LIMIT:
        stop = next((i for i, line in enumerate(lines) if line != ref.lines[i]), len(lines))
        assert all(re.search(r" -> -1 errno=(19|22|51) ", line) for line in lines[stop:]), lines
        assert "fstat sparse -> 0 type=REG size=1099511627777 nlink=1 perm=000" not in lines
    else:
        assert result.status is RunStatus.OK, result
        assert re.search(r"ftruncate sparse 2\^40 -> -1 errno=(19|22|51) ", result.stdout.decode())
        assert "pwrite sparse @2^40 -> 1" not in lines


@pytest.fixture
def own_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A Sandbox whose data dir this test removes itself (with rm: the tree may be deep)."""
    data_dir = tmp_path / "warden-data"
    sb = Sandbox(Settings(data_dir=data_dir, compile_timeout_s=20))
    yield sb
    sb.compiler.close()
    subprocess.run(["rm", "-rf", str(data_dir)], check=True)


def test_deep_scratch_tree_is_removed(
    reference: Reference, own_sandbox: Sandbox, tmp_path: Path
) -> None:
    """A guest may leave a 1500-level tree in /tmp; the run still ends ok and it is removed.

    (Before cd8423b, shutil.rmtree recursed once per level: RecursionError, internal_error,
    and the scratch dir stayed on disk.)"""
    ref = reference.run("raw", ["deep_leftover"], Profile.FULL, tmp_path / "ref")
    assert "deep tree levels=1500" in ref.lines
    result = warden_run(own_sandbox, "raw", "deep_leftover", FULL)
    assert result.status is RunStatus.OK, result
    assert _text(result.stdout).splitlines() == ref.lines
    scratch_root = own_sandbox.settings.scratch_root
    assert not scratch_root.exists() or not any(scratch_root.iterdir())

