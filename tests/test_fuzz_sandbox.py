"""Fuzz the sandbox: ``internal_error`` means a bug in Warden, never something a guest causes.

Random valid modules (``wasm-tools smith``), generated WASI call programs, hand-made edge
modules and invalid bytes run through ``Sandbox.run`` with small limits and varied grants.
For every run: no ``internal_error``, no exception, the status allowed for the case, no
per-run file left in the data dir, and no growth of open fds or threads. The WASI programs
are also run on stock wasmtime WASI (granted files and scratch as real directories), call by
call: where one succeeds the other must too (Warden's own descriptor, path, poll and exit
functions against wasmtime's), and a trap for a bad pointer must be about a pointer that is
bad. A smaller batch goes through a real API + worker, which must finish every job and stay
alive.

Deterministic: every case is rebuilt from its id (``smith/17`` ...) by
``python -m tests.fuzz_corpus <id> [--run]``; a failure prints the ids, the smallest
failing module's WAT and the result. If the test process itself dies (a crash in native
code), the id of the case that was running is in the ``fuzz-progress`` file of the data
dir (printed at the start of each test with ``-s``).
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime

from sandboxes.runtime.sandbox import Sandbox
from sandboxes.runtime.wasmtime_ext import set_stdin_bytes
from sandboxes.schema import Grants, RunResult, RunStatus
from sandboxes.settings import Settings
from tests import fuzz_corpus as F
from tests.service.cluster import Cluster, worker_name
from workers.store import job_key

pytestmark = pytest.mark.slow

N_SMITH = 500  # smith modules on the fuel-rewriter sandbox
N_SMITH_METERED = 200  # more smith modules (other seeds) on the wasmtime-metered sandbox
N_WASI = 500  # generated WASI call programs
N_INVALID = 500
# A compiled module with data segments holds a memfd (wasmtime's copy-on-write memory
# image) while it is in the sandbox's in-memory cache: a small cache bounds those, and open
# fds past it plus a few mean something leaks per run.
CACHE_ENTRIES = 16
FD_SLACK = CACHE_ENTRIES + 4
THREAD_SLACK = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> F.Corpus:
    return F.Corpus(tmp_path_factory.mktemp("fuzz-shapes"))


def _sandbox(root: Path, instrumented: bool = True) -> Iterator[Sandbox]:
    sb = Sandbox(Settings(
        data_dir=root, compile_timeout_s=20, memory_cache_entries=CACHE_ENTRIES,
        fuel_instrumentation=instrumented,
    ))
    yield sb
    sb.compiler.close()


@pytest.fixture(scope="module")
def fuzz_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The default sandbox (core modules metered by Warden's fuel rewriter), with a data
    dir of its own so that what it leaves there is this file's runs' doing."""
    yield from _sandbox(tmp_path_factory.mktemp("fuzz-data"))


@pytest.fixture(scope="module")
def metered_fuzz_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Core modules metered by wasmtime's fuel and epochs (start functions run at
    instantiation here: the rewriter moves them into an export)."""
    yield from _sandbox(tmp_path_factory.mktemp("fuzz-data-metered"), instrumented=False)


# -- the invariants of one run ------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))  # native threads too (wasmtime's, tokio's)


@dataclass
class Failure:
    case: F.Case
    kind: str  # what went wrong, stable across cases (the grouping key's first part)
    detail: str
    result: RunResult | None = None

    def signature(self) -> tuple[str, str]:
        """One group per bug: the kind, and for an unexpected status its message (numbers
        and offsets masked)."""
        kind = re.sub(r"call #\d+", "call #N", self.kind)
        if self.kind != "internal_error" and not self.kind.startswith("status"):
            return kind, ""
        text = self.detail.splitlines()[0] if self.detail else ""
        return kind, re.sub(r"0x[0-9a-f]+|\d+", "N", text)[:160]


class Fuzzer:
    """Runs cases on one sandbox and collects every broken invariant."""

    def __init__(self, sandbox: Sandbox, label: str) -> None:
        self.sandbox = sandbox
        self.label = label
        self.failures: list[Failure] = []
        self.statuses: Counter[str] = Counter()
        self.runs = 0
        self.slow: list[tuple[float, str]] = []
        self.leftovers: set[str] = set()
        # (call, Warden, wasmtime): differences allowed (both refuse, or a bad argument)
        self.errno_notes: Counter[tuple[str, str, str]] = Counter()
        data_dir = sandbox.settings.data_dir
        self.progress = data_dir / "fuzz-progress"
        print(f"\n[{label}] last case started is written to {self.progress}")
        self._warm_up()
        self.data_dir_base = self._data_dir_entries()
        self.fd_base, self.thread_base = _fds(), _threads()
        self.fd_over: tuple[int, str] | None = None  # first (count, case id) past the slack
        self.thread_peak = (self.thread_base, "")

    def _warm_up(self) -> None:
        """Engines, tickers, the compile helper and the file tree exist before counting."""
        for kind in F.GRANT_KINDS:
            result = self.sandbox.run(F.wat2wasm(F._HELLO), grants=F.grants_for(kind))
            assert result.status is RunStatus.OK, (kind, result)

    def run(self, case: F.Case) -> RunResult | None:
        self.progress.write_text(case.id)
        self.runs += 1
        started = time.monotonic()
        try:
            result = self.sandbox.run(case.module, case.limits_model(), case.grants_model())
        except BaseException as exc:  # Sandbox.run never raises
            self.fail(case, "Sandbox.run raised", f"{exc!r}\n{traceback.format_exc()}")
            return None
        took = time.monotonic() - started
        self.slow.append((took, case.id))
        self.statuses[result.status.value] += 1
        if result.status is RunStatus.INTERNAL_ERROR:
            self.fail(case, "internal_error", result.message or "", result)
        elif case.allowed is not None and result.status not in case.allowed:
            allowed = "|".join(sorted(case.allowed))
            self.fail(case, f"status {result.status.value}, expected {allowed}",
                      result.message or "", result)
        self._check_data_dir(case)
        self._check_resources(case)
        return result

    def fail(self, case: F.Case, kind: str, detail: str, result: RunResult | None = None) -> None:
        self.failures.append(Failure(case, kind, detail, result))

    def _data_dir_entries(self) -> set[str]:
        """Everything under the sandbox's data dir but its artifact cache (which grows by
        one file per distinct module, by design) and this file's progress note."""
        settings = self.sandbox.settings
        found: set[str] = set()
        for top, dirs, files in os.walk(settings.data_dir):
            if Path(top) == settings.cache_dir.parent:
                dirs[:] = [d for d in dirs if Path(top, d) != settings.cache_dir]
            found.update(os.path.join(top, n) for n in (*dirs, *files))
        found.discard(str(self.progress))
        return found

    def _check_data_dir(self, case: F.Case) -> None:
        """No run leaves anything in the data dir (scratch dirs, file trees, temp files):
        after the warm-up, which made the one shared tree of ``F.FILES``, nothing appears."""
        new = self._data_dir_entries() - self.data_dir_base - self.leftovers
        if new:  # reported at the run that left it
            shown = sorted(os.path.relpath(p, self.sandbox.settings.data_dir) for p in new)
            self.fail(case, "left in the data dir after the run", ", ".join(shown[:20]))
            self.leftovers.update(new)

    def _check_resources(self, case: F.Case) -> None:
        fds = _fds()
        if self.fd_over is None and fds > self.fd_base + FD_SLACK:
            self.fd_over = (fds, case.id)
        threads = _threads()
        if threads > self.thread_peak[0]:
            self.thread_peak = (threads, case.id)

    def finish(self) -> None:
        """Resource checks at the end: fds and threads back near where they started."""
        deadline = time.monotonic() + 5  # epoch tickers linger ~1 s after their last run
        while time.monotonic() < deadline and (
            _fds() > self.fd_base + FD_SLACK or _threads() > self.thread_base + THREAD_SLACK
        ):
            time.sleep(0.1)
        last = F.Case("(end of batch)", b"")
        fds, threads = _fds(), _threads()
        if fds > self.fd_base + FD_SLACK:
            first = f"; first past {self.fd_base + FD_SLACK} after {self.fd_over}"
            self.fail(last, "open fds grew",
                      f"{self.fd_base} -> {fds} over {self.runs} runs{first}")
        if threads > self.thread_base + THREAD_SLACK:
            self.fail(last, "threads grew",
                      f"{self.thread_base} -> {threads} over {self.runs} runs; peak "
                      f"{self.thread_peak}; Python threads: {threading.active_count()}")

    def report(self) -> str:
        groups: dict[tuple[str, str], list[Failure]] = {}
        for f in self.failures:
            groups.setdefault(f.signature(), []).append(f)
        lines = [f"[{self.label}] {len(self.failures)} broken invariants in {len(groups)} groups "
                 f"over {self.runs} runs (statuses: {dict(self.statuses)})"]
        for (kind, _), fails in sorted(groups.items(), key=lambda g: -len(g[1])):
            smallest = min(fails, key=lambda f: f.case.size)
            ids = ", ".join(f.case.id for f in fails[:12]) + (" ..." if len(fails) > 12 else "")
            lines += ["", f"== {kind}: {len(fails)} case(s): {ids}",
                      f"   smallest: {smallest.case.id} (grants={smallest.case.grants}, "
                      f"limits={smallest.case.limits or 'base'}) {smallest.case.note}",
                      f"   detail: {smallest.detail[:1500]}"]
            if smallest.result is not None:
                r = smallest.result
                lines.append(f"   result: status={r.status.value} trap_kind={r.trap_kind} "
                             f"exit_code={r.exit_code} stdout={r.stdout[:120]!r}")
            if smallest.case.module:
                wat = F.print_wat(smallest.case.module, limit=3000)
                lines.append("   module:\n" + "\n".join("     " + x for x in wat.splitlines()))
        lines.append("\nreproduce one: python -m tests.fuzz_corpus <case id> --run")
        return "\n".join(lines)

    def assert_clean(self) -> None:
        self.finish()
        slowest = sorted(self.slow, reverse=True)[:3]
        print(f"[{self.label}] {self.runs} runs, statuses {dict(self.statuses)}; slowest "
              + ", ".join(f"{cid} {t:.2f}s" for t, cid in slowest))
        if self.failures:
            pytest.fail(self.report(), pytrace=False)


# -- 1. random valid modules ----------------------------------------------------------------


def test_smith_modules(fuzz_sandbox: Sandbox, corpus: F.Corpus) -> None:
    fuzzer = Fuzzer(fuzz_sandbox, "smith, fuel rewriter")
    for seed in range(N_SMITH):
        fuzzer.run(corpus.smith(seed))
    fuzzer.assert_clean()


def test_smith_modules_wasmtime_metered(metered_fuzz_sandbox: Sandbox, corpus: F.Corpus) -> None:
    fuzzer = Fuzzer(metered_fuzz_sandbox, "smith, wasmtime fuel")
    for seed in range(10_000, 10_000 + N_SMITH_METERED):
        fuzzer.run(corpus.smith(seed))
    fuzzer.assert_clean()


@pytest.mark.parametrize("metering", ["fuel-rewriter", "wasmtime-fuel"])
def test_crafted_edge_modules(
    metering: str, fuzz_sandbox: Sandbox, metered_fuzz_sandbox: Sandbox
) -> None:
    sandbox = fuzz_sandbox if metering == "fuel-rewriter" else metered_fuzz_sandbox
    fuzzer = Fuzzer(sandbox, f"crafted, {metering}")
    for case in F.crafted_cases():
        for grants in ("none", "scratch"):
            fuzzer.run(dataclasses.replace(case, grants=grants))
    fuzzer.assert_clean()


# -- WASI call programs, and stock wasmtime as the reference for Warden's host functions ----

_REFERENCE_ENGINE: wasmtime.Engine | None = None


@dataclass
class _Reference:
    end: str  # "done" (_start returned), "exit" (proc_exit) or "trap"
    log: dict[int, int]  # call index -> errno, read back from the guest's memory
    exit_code: int | None = None
    message: str = ""


def _reference_run(wasm: bytes, grants: Grants, workdir: Path) -> _Reference:
    """Run on stock wasmtime WASI, nothing of Warden's in the way: granted files in a real
    read-only directory at /, the scratch dir a real writable one at /tmp (Warden's order)."""
    global _REFERENCE_ENGINE
    if _REFERENCE_ENGINE is None:
        _REFERENCE_ENGINE = wasmtime.Engine()
    engine = _REFERENCE_ENGINE
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["main.wasm", *grants.args]
    wasi.env = list(grants.env.items())
    set_stdin_bytes(wasi, grants.stdin)
    wasi.stdout_custom = len  # accept and drop (the log is read from memory)
    if grants.files:
        root = workdir / "files"
        for name, data in grants.files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        wasi.preopen_dir(str(root), "/", False)
    if grants.scratch is not None:
        (workdir / "scratch").mkdir()
        wasi.preopen_dir(str(workdir / "scratch"), "/tmp", True)
    store.set_wasi(wasi)
    instance = linker.instantiate(store, wasmtime.Module(engine, wasm))
    start, memory = instance.exports(store)["_start"], instance.exports(store)["memory"]
    assert isinstance(start, wasmtime.Func) and isinstance(memory, wasmtime.Memory)
    end, code, message = "done", None, ""
    try:
        start(store)
    except wasmtime.ExitTrap as exc:
        end, code = "exit", exc.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        message = " ".join(str(exc).split())
        # wasmtime refuses exit codes >= 126 (and loses the code); Warden keeps them
        end = "exit" if "invalid exit status" in message else "trap"
    log = F.memory_log(memory.read(store, F._LOG, F._LOG + 2 * F._MAX_CALLS))
    store.close()
    return _Reference(end, log, code, message)


# A guest passing a bad pointer or bad flag bits may get a trap or an errno: wasmtime and
# Warden check arguments in different orders, and wasmtime traps where Warden may refuse.
_WARDEN_BAD_POINTER = re.compile(r"(\d+) bytes at 0x([0-9a-f]+) are outside the guest's memory")
_WASMTIME_BAD_POINTER = re.compile(r"Pointer out of bounds: Region \{ start: (\d+), len: (\d+)")
_BAD_ARGUMENT = ("outside the guest's memory", "aligned", "Invalid flag value",
                 "Int conversion error", "Invalid enum value", "out of bounds")
# Where Warden's filesystem differs from a real one by design: no links; an exact scratch
# quota (64 KiB here). After such a call the two trees differ: stop comparing.
_NO_LINKS = frozenset({"path_link", "path_symlink"})
_QUOTA_ERRNOS = frozenset({19, 22, 51})  # EDQUOT, EFBIG, ENOSPC


def _pointer_claim_false(message: str, memory: int) -> str | None:
    """If a trap says a pointer is outside the guest's memory but it is not, why."""
    m = _WARDEN_BAD_POINTER.search(message)
    if m is not None:
        length, at = int(m.group(1)), int(m.group(2), 16)
    else:
        m = _WASMTIME_BAD_POINTER.search(message)
        if m is None:
            return None
        at, length = int(m.group(1)), int(m.group(2))
    if at + length > memory:
        return None
    return f"{length} bytes at {at:#x} are inside the guest's {memory}-byte memory"


def _compare_with_reference(
    fuzzer: Fuzzer, case: F.Case, result: RunResult, workdir: Path
) -> None:
    """Warden's WASI (its own for descriptors, paths, poll and exit) against wasmtime's own,
    call by call: where one succeeds the other must too, and a trap for a bad pointer must
    be about a pointer that is bad."""
    assert case.wasi_calls is not None and isinstance(case.module, str)
    grants = case.grants_model()
    ref = _reference_run(F.wat2wasm(case.module), grants, workdir)
    ours, done = F.warden_log(result.stdout)
    message = " ".join((result.message or "").split())
    warden_end = f"Warden {result.status.value} exit_code={result.exit_code} {message}"
    has_fs = bool(grants.files) or grants.scratch is not None

    def differs(what: str, i: int) -> None:
        args = ", ".join(str(a) for a in case.wasi_args[i])
        fuzzer.fail(case, what, f"{what}; its arguments ({args}); {warden_end}; "
                    f"wasmtime {ref.end} {ref.message}", result)

    def note(name: str, mine: object, theirs: object) -> None:
        fuzzer.errno_notes[(name, str(mine), str(theirs))] += 1

    for i, name in enumerate(case.wasi_calls):
        args = case.wasi_args[i]
        if name == "proc_exit":
            if ref.end != "exit" or result.status not in (RunStatus.OK, RunStatus.NONZERO_EXIT):
                differs(f"call #{i} proc_exit ends the runs differently", i)
            elif ref.exit_code is not None and result.exit_code != ref.exit_code:
                differs(f"call #{i} proc_exit: exit code {result.exit_code}, "
                        f"wasmtime {ref.exit_code}", i)
            return
        if name in ("fd_close", "fd_renumber") and 1 in args[:2]:
            return  # the log's own stdout is gone from here on (in both)
        mine, theirs = ours.get(i), ref.log.get(i)
        if mine is None and theirs is None:
            return  # both stopped here
        if mine is None:  # Warden stopped at this call, wasmtime returned an errno
            false_claim = _pointer_claim_false(message, case.wasi_memory)
            if false_claim is not None:
                differs(f"call #{i} {name}: Warden traps on a good pointer", i)
            elif result.status is RunStatus.TRAP and any(b in message for b in _BAD_ARGUMENT):
                note(name, "trap", theirs)  # a bad pointer Warden checks first
            elif result.status in (RunStatus.WALL_TIMEOUT, RunStatus.OUTPUT_LIMIT,
                                   RunStatus.SCRATCH_LIMIT):
                pass
            else:
                differs(f"call #{i} {name}: Warden stopped, wasmtime errno {theirs}", i)
            return
        if theirs is None:  # wasmtime trapped at this call, Warden returned an errno
            if _pointer_claim_false(ref.message, case.wasi_memory) is None and (
                any(b in ref.message for b in _BAD_ARGUMENT)
                and (mine != 0 or "out of bounds" in ref.message)
            ):
                note(name, mine, "trap")
            else:
                differs(f"call #{i} {name}: Warden errno {mine}, wasmtime trapped", i)
            return
        if has_fs and (name in _NO_LINKS or mine in _QUOTA_ERRNOS):
            note(name, mine, theirs)
            return  # by design (see _NO_LINKS): the trees differ from here on
        if mine != theirs:
            # Both refuse, for different reasons (which check comes first); or a gathering
            # write that Warden refuses for a bad buffer that wasmtime, which writes only
            # the first non-empty one, never looks at.
            gathering = name in ("fd_write", "fd_pwrite") and args[2] > 1 and not theirs
            # (wasmtime answers a zero-length read of in-memory stdin with EINTR)
            eintr = name == "fd_read" and theirs == 27 and mine == 0
            # (wasmtime refuses the dsync/rsync/sync fdflags as unsupported; Warden's files
            # are in memory, where they mean nothing)
            sync = name == "path_open" and theirs == 58 and mine == 0 and args[7] & 0b11010
            if mine and theirs:
                note(name, mine, theirs)
                continue
            if gathering or eintr or sync:
                note(name, mine, theirs)
                return  # one succeeded, the other did not: their states differ from here on
            differs(f"call #{i} {name}: Warden errno {mine}, wasmtime errno {theirs}", i)
            return
    if ref.end == "done" and not done:
        differs("wasmtime ran _start to its end, Warden did not", len(case.wasi_calls) - 1)


def test_wasi_call_programs(fuzz_sandbox: Sandbox, tmp_path: Path) -> None:
    fuzzer = Fuzzer(fuzz_sandbox, "WASI programs")
    compared = 0
    for seed in range(N_WASI):
        case = F.wasi_program(seed)
        result = fuzzer.run(case)
        if (
            result is not None
            and result.status not in (RunStatus.WALL_TIMEOUT, RunStatus.OUTPUT_LIMIT,
                                      RunStatus.INTERNAL_ERROR)
            and result.wall_time_s < 0.5  # the reference's sleeps are not bounded
        ):
            compared += 1
            workdir = tmp_path / f"reference-{seed}"
            workdir.mkdir()
            _compare_with_reference(fuzzer, case, result, workdir)
            shutil.rmtree(workdir)
    print(f"[WASI programs] {compared} compared with stock wasmtime; allowed differences "
          f"(call, Warden, wasmtime): {dict(fuzzer.errno_notes.most_common(30))}")
    assert compared >= N_WASI // 4
    fuzzer.assert_clean()


# -- 2. invalid bytes -----------------------------------------------------------------------


def test_invalid_bytes(fuzz_sandbox: Sandbox, corpus: F.Corpus) -> None:
    fuzzer = Fuzzer(fuzz_sandbox, "invalid bytes")
    for seed in range(N_INVALID):
        fuzzer.run(corpus.invalid(seed))
    fuzzer.assert_clean()


# -- 3. a real worker -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("fuzz-cluster"), lease_s=5)
    try:
        c.start_api()
        c.start_worker()
        c.wait_ready(1)
        yield c
    finally:
        c.close()


_WORKER_CRAFTED = (
    "oob-data", "oob-elem", "start-fn-trap", "start-fn-exit", "start-param", "start-is-proc-exit",
    "tables-65", "memory-over-limit", "exit-u32-max", "poll-oneoff-above-2gib",
)


def _worker_cases(corpus: F.Corpus) -> list[F.Case]:
    crafted = {c.id: c for c in F.crafted_cases()}
    cases = [crafted[f"crafted/{name}"] for name in _WORKER_CRAFTED]
    smith = (corpus.smith(s) for s in range(N_SMITH))
    cases += [c for c in smith if "imports=wasi" in c.note][:10]
    cases += [F.wasi_program(s) for s in range(6)]
    invalid = [corpus.invalid(s) for s in range(N_INVALID)]
    for kind in ("component", "cut", "wat", "text"):
        cases.append(next(c for c in invalid if c.note == kind))
    return cases


def _worker_of(c: Cluster, job_id: str) -> str | None:
    """host:pid of the worker that ran the job (in Redis only: not shown to tenants)."""
    value = c.client.hget(job_key(job_id), "worker")
    return value.decode() if isinstance(value, bytes) else None


def test_worker_survives_fuzz_cases(fuzz_cluster: Cluster, corpus: F.Corpus) -> None:
    c = fuzz_cluster
    (worker,) = c.workers
    cases = _worker_cases(corpus)
    assert len(cases) == 30
    jobs: list[tuple[F.Case, str]] = []
    problems: list[str] = []
    for case in cases:
        body: dict[str, object] = {
            "limits": case.limits_model().model_dump(mode="json"),
            "grants": case.grants_model().model_dump(mode="json"),
        }
        if isinstance(case.module, str):
            body["wat"] = case.module
        else:
            body["wasm_base64"] = base64.b64encode(case.module).decode()
        r = c.http.post("/v1/jobs", json=body)
        refused = r.json().get("type", "") if r.status_code == 422 else ""
        if refused.endswith(("/invalid-module", "/no-entry-point")):
            continue  # refused at the door: fine for a module that is not valid or runnable
        if r.status_code != 202:
            problems.append(f"{case.id}: submit answered {r.status_code} {r.text[:300]}")
            continue
        jobs.append((case, r.json()["id"]))
    for case, job_id in jobs:
        try:
            record = c.wait_state(job_id, timeout_s=60)
        except AssertionError as exc:
            problems.append(f"{case.id}: job lost or stuck: {exc}")
            continue
        result = record.get("result") or {}
        status = result.get("status")
        if record["state"] != "finished":
            problems.append(f"{case.id}: job {record['state']}: {record.get('error')}")
        elif status == RunStatus.INTERNAL_ERROR:
            problems.append(f"{case.id}: internal_error: {result.get('message')}")
        elif case.allowed is not None and status not in case.allowed:
            problems.append(f"{case.id}: status {status}, expected {sorted(case.allowed)}: "
                            f"{str(result.get('message'))[:200]}")
        ran_on = _worker_of(c, job_id)
        if ran_on != worker_name(worker):
            problems.append(f"{case.id}: ran on {ran_on}, not {worker_name(worker)}")
    if worker.poll() is not None:
        problems.append(f"the worker died (exit {worker.returncode})")
    log = c.log_of(worker)
    tracebacks = log.count("Traceback")
    if problems or tracebacks:
        tail = "\n".join(log.splitlines()[-60:])
        pytest.fail(
            f"{len(problems)} problems over {len(jobs)} jobs ({len(cases)} cases), "
            f"{tracebacks} tracebacks in the worker log:\n" + "\n".join(problems)
            + f"\n--- worker log (tail) ---\n{tail}"
        )
