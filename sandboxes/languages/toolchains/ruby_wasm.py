"""The Ruby language runtime: CRuby 3.4.1 for WASI, from the npm package ``@ruby/3.4-wasm-wasi``.

The package (ruby.wasm 2.10.1) ships ``dist/ruby+stdlib.wasm``: CRuby with its whole standard
library and bundled gems embedded (a wasi-vfs file system in the module's data, served from
linear memory: a run needs no preopen beyond the granted script, and the guest sees no host
file). It is built for the JavaScript embedding, though: a WASI preview1 *reactor* that also
imports 24 functions of a JS host (``rb-js-abi-host``, ``canonical_abi``) and has no
``_start``. ``build_command`` turns it into the WASI command the sandbox runs:

* the 24 JS-host imports become defined functions that trap (``unreachable``); they are only
  reached through ``require "js"``, which then traps instead of talking to a host;
* ``args_sizes_get`` and ``args_get`` are imported, and a ``_start`` (WAT below, appended)
  does what CRuby's ``main`` does: ``ruby_init``, ``ruby_sysinit``, ``ruby_options(argc,
  argv)`` (parses the flags, checks and compiles the script, sets ``$0``, ``ARGV``,
  ``DATA``), evaluates ``RUNNER`` under ``rb_protect`` (it runs the script as a top-level
  iseq: its frames are ``<main>`` frames, as under ``ruby main.rb``), then ``ruby_cleanup``
  (``at_exit`` handlers, the uncaught exception's message and backtrace on stderr, ``exit``
  statuses, flushing) and ``proc_exit`` with its status. The reactor's ``main`` path
  (``ruby_run_node``) was not linked into it, so these internals are called by function
  index, found by name in the package's ``ruby.debug+stdlib.wasm`` (the same build with a
  name section; its index space is checked to be identical). Each call runs inside the
  asyncify driver loop the reactor's own exports use (CRuby on wasm implements
  setjmp/longjmp, fibers and the GC's stack scan by unwinding to that loop and rewinding);
* only ``memory`` and ``_start`` are exported.

The npm tarball is fetched with ``npm pack`` (no install scripts, no dependencies) into the
toolchain dir, checked against its pinned sha512 integrity, and the two modules taken out
of it by exact name are checked against pinned SHA-256s; the command module built from them
must hash to ``COMMAND_SHA256`` (the rewrite is deterministic) and is verified again before
every use. A missing or altered file raises ``RubyRuntimeError``.

Interpreter flags: ``--disable-gems`` (RubyGems' start-up costs ~600 M fuel, five times the
rest of a start) with the bundled gems' ``lib`` directories on ``-I`` instead, so ``require
"prime"``, ``"matrix"``, ``"minitest"``... still work without RubyGems; ``-EUTF-8`` (the
guest has no locale: the default external encoding would be US-ASCII).

Figures (2-core machine, shared): the module is 30.6 MB; Warden's engine compiles it in
~20 s idle (40 s busy) to a 78 MB artifact that deserializes in 0.16 s. ``puts 1`` costs
~160 M fuel, 40-70 ms; ``require "json"`` adds ~37 M. Most of it is CRuby's own start-up
(``ruby_init`` + ``ruby_options``), which a pre-initialised snapshot could remove.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from sandboxes.languages.toolchains import wasm_relink as wr
from sandboxes.languages.toolchains.base import file_lock
from sandboxes.languages.toolchains.npm_package import NpmPackage, NpmPackageError
from sandboxes.schema import Grants

NPM_PACKAGE: Final = "@ruby/3.4-wasm-wasi"
NPM_VERSION: Final = "2.10.1"
NPM_INTEGRITY: Final = (
    "sha512-qrzIJ/7TGSpsZpFyLJb9OXO6TYAq18XoLd11We17Sr78hWpb5IGGFgMQ9A2Y8Ww5n0k8uKA/I8/P8MJdzlJX0Q=="
)
PACKAGE: Final = NpmPackage(NPM_PACKAGE, NPM_VERSION, NPM_INTEGRITY)
RUBY_VERSION: Final = "3.4.1"
BUILD: Final = f"ruby.wasm {NPM_VERSION} ({NPM_PACKAGE}), CRuby {RUBY_VERSION} +PRISM [wasm32-wasi]"

# Members of the npm tarball, and what they must hash to.
REACTOR_MEMBER: Final = "package/dist/ruby+stdlib.wasm"
REACTOR_SHA256: Final = "4b814fc9d13505ea5b4c1f3bd3a7cc7ccca137f551196b9b21f0a7caf9cc5878"
DEBUG_MEMBER: Final = "package/dist/ruby.debug+stdlib.wasm"
DEBUG_SHA256: Final = "22fe0f3bafa09c96f055819919cf0534711834a67347eb9969f0050559680d04"
LICENSE_MEMBERS: Final = ("package/dist/LICENSE", "package/dist/NOTICE")
_MAX_MEMBER_BYTES: Final = 64 * 1024 * 1024

#: The command module ``build_command`` makes from the pinned reactor (see the module doc).
COMMAND_SHA256: Final = "169b501bbf2c290bb57d5fd47c7f6938ac974d092bf9048c5a5213cc70474585"
COMMAND_FILE: Final = "ruby.wasm"
RECIPE_VERSION: Final = 1  # bump with any change to build_command or _START_WAT

#: ``Limits.module_bytes`` must be at least this for the interpreter to be accepted.
RUBY_MODULE_LIMIT_BYTES: Final = 40 * 1024 * 1024
#: Name of the user's script among the granted files, and its path inside the guest.
SCRIPT_FILE: Final = "app/main.rb"
SCRIPT_PATH: Final = "/" + SCRIPT_FILE
ARGV0: Final = "ruby"

_GEMS: Final = "/usr/local/lib/ruby/gems/3.4.0/gems"
#: The bundled (not default) gems of this build, whose files are not in the stdlib dir.
BUNDLED_GEMS: Final = (
    "abbrev-0.1.2", "base64-0.2.0", "csv-3.3.2", "drb-2.2.1", "getoptlong-0.2.1",
    "matrix-0.4.2", "minitest-5.25.4", "mutex_m-0.3.0", "net-ftp-0.3.8", "net-imap-0.5.4",
    "net-pop-0.1.2", "net-smtp-0.5.0", "observer-0.1.2", "power_assert-2.0.5",
    "prime-0.1.3", "rake-13.2.1", "repl_type_completor-0.1.9", "resolv-replace-0.1.1",
    "rexml-3.4.0", "rinda-0.2.0", "rss-0.3.1", "test-unit-3.6.7", "typeprof-0.30.1",
)
INTERPRETER_FLAGS: Final[tuple[str, ...]] = (
    "--disable-gems", "-EUTF-8", *(f"-I{_GEMS}/{gem}/lib" for gem in BUNDLED_GEMS),
)

# The reactor's internals that _start calls, by their name-section names.
_INTERNALS: Final = (
    "ruby_init", "ruby_sysinit", "ruby_options", "ruby_cleanup", "rb_protect",
    "rb_wasm_handle_jmp_unwind", "rb_wasm_handle_scan_unwind", "rb_wasm_handle_fiber_unwind",
)
_EXPORTS_USED: Final = (
    "_initialize", "cabi_realloc", "asyncify_stop_unwind", "asyncify_start_rewind",
)

#: The table-slot function ``rb_protect`` runs: the reactor's own evaluator behind its
#: ``rb-eval-string-protect`` export. Given a ``{char *ptr; size_t len}`` string it calls
#: ``Kernel.eval(code, TOPLEVEL_BINDING, "eval")``.
_EVAL_THUNK: Final = "rb_eval_string_value_protect_thunk"

#: What ``_start`` evaluates once ``ruby_options`` has checked and compiled the script (and
#: set ``$0``, ``ARGV``, ``DATA``): the script compiled again as a top-level iseq and run, so
#: its frames are ``<main>`` frames as under ``ruby main.rb``. (The iseq ``ruby_options``
#: returns is a *main* iseq, which only ``rb_iseq_eval_main`` runs, and the reactor was
#: linked without it.) The runner's own frames (the ``InstructionSequence#eval`` call and
#: what is below it) are cut off the end of an escaping exception's backtrace and its
#: causes'; its locals live in a lambda, not in TOPLEVEL_BINDING. The exception itself is
#: left for ``ruby_cleanup`` to report (or, for SystemExit, to exit with); one raised with no
#: backtrace at all (NoMemoryError) gets an empty one, not the runner's. A backtrace read
#: inside the program (``caller``, a rescued exception's) still shows these frames.
RUNNER: Final = """-> do
  b = caller_locations(0).map(&:to_s); RubyVM::InstructionSequence.compile_file($0).eval
rescue Exception => e
  x, seen = e, {}
  while x && !seen[x.__id__]
    seen[x.__id__] = true
    l = x.backtrace_locations || x.backtrace
    x.set_backtrace([]) rescue nil if !l && x.equal?(e)
    k = l ? l.size - b.size - 1 : -1
    if k >= 0 && l[k + 1..].map(&:to_s) == b &&
       l[k].to_s.end_with?("'RubyVM::InstructionSequence#eval'")
      x.set_backtrace(l[0, k]) rescue nil
    end
    x = x.cause
  end
  raise
end.call
"""

# _start and the driver loop. @UNWIND_BUF@ (address of CRuby's ``rb_asyncify_unwind_buf``)
# and @EVAL_SLOT@ (table slot of the eval thunk) are filled in from the reactor, @CODE_*@
# from RUNNER. Frame (64 bytes, malloc'd): +3 new_fiber_started (u8), +4 fiber entry, +8
# its arg1, +12 its arg0 (the loop's locals in the C version, RB_WASM_LIB_RT), +16 argc,
# +20 argv, +24 RUNNER's address and +28 its length (the thunk's string), +32 rb_protect's
# state, +36 the argv buffer size.
_START_WAT: Final = """
(module
  (type $entry (func (param i32 i32)))
  (import "env" "memory" (memory 0))
  (import "env" "table" (table 0 funcref))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "ruby" "_initialize" (func $initialize))
  (import "ruby" "cabi_realloc" (func $malloc (param i32 i32 i32 i32) (result i32)))
  (import "ruby" "ruby_init" (func $ruby_init))
  (import "ruby" "ruby_sysinit" (func $ruby_sysinit (param i32 i32)))
  (import "ruby" "ruby_options" (func $ruby_options (param i32 i32) (result i32)))
  (import "ruby" "ruby_cleanup" (func $ruby_cleanup (param i32) (result i32)))
  (import "ruby" "rb_protect" (func $rb_protect (param i32 i32 i32) (result i32)))
  (import "ruby" "asyncify_stop_unwind" (func $stop_unwind))
  (import "ruby" "asyncify_start_rewind" (func $start_rewind (param i32)))
  (import "ruby" "rb_wasm_handle_jmp_unwind" (func $jmp_unwind (result i32)))
  (import "ruby" "rb_wasm_handle_scan_unwind" (func $scan_unwind (result i32)))
  (import "ruby" "rb_wasm_handle_fiber_unwind"
    (func $fiber_unwind (param i32 i32 i32 i32) (result i32)))

  ;; RB_WASM_LIB_RT: run entry $which (0 ruby_init, 1 ruby_sysinit, 2 ruby_options,
  ;; 3 rb_protect(eval thunk), 4 ruby_cleanup) until it returns with no asyncify unwind
  ;; pending: a setjmp/longjmp, fiber switch or GC stack scan unwinds to here, is handled
  ;; by the runtime, and the entry is called again to rewind.
  (func $rt (param $which i32) (param $a i32) (param $b i32) (param $f i32) (result i32)
    (local $r i32) (local $fep i32) (local $buf i32)
    (i32.store offset=4 (local.get $f) (i32.const 0))
    (i32.store offset=8 (local.get $f) (i32.const 0))
    (i32.store offset=12 (local.get $f) (i32.const 0))
    (block $done
      (loop $again
        (if (local.get $fep)
          (then
            (call_indirect (type $entry)
              (i32.load offset=12 (local.get $f)) (i32.load offset=8 (local.get $f))
              (local.get $fep)))
          (else
            (block $entered
              (block $cleanup (block $protect (block $options (block $sysinit (block $init
                (br_table $init $sysinit $options $protect $cleanup (local.get $which)))
                (call $ruby_init) (br $entered))
                (call $ruby_sysinit (local.get $a) (local.get $b)) (br $entered))
                (local.set $r (call $ruby_options (local.get $a) (local.get $b))) (br $entered))
                (local.set $r
                  (call $rb_protect (i32.const @EVAL_SLOT@) (local.get $a) (local.get $b)))
                (br $entered))
              (local.set $r (call $ruby_cleanup (local.get $a))))))
        (i32.store8 offset=3 (local.get $f) (i32.const 0))
        (br_if $done (i32.eqz (i32.load (i32.const @UNWIND_BUF@))))
        (i32.store (i32.const @UNWIND_BUF@) (i32.const 0))
        (call $stop_unwind)
        (block $rewind
          (br_if $rewind (local.tee $buf (call $jmp_unwind)))
          (br_if $rewind (local.tee $buf (call $scan_unwind)))
          (br_if $rewind (local.tee $buf (call $fiber_unwind
            (i32.add (local.get $f) (i32.const 4)) (i32.add (local.get $f) (i32.const 12))
            (i32.add (local.get $f) (i32.const 8)) (i32.add (local.get $f) (i32.const 3)))))
          (br_if $done (i32.eqz (i32.load8_u offset=3 (local.get $f))))
          (local.set $fep (i32.load offset=4 (local.get $f)))
          (br $again))
        (call $start_rewind (local.get $buf))
        (local.set $fep (i32.load offset=4 (local.get $f)))
        (br $again)))
    (local.get $r))

  (func (export "_start")
    (local $f i32) (local $argc i32) (local $argv i32) (local $n i32) (local $code i32)
    (call $initialize)
    (local.set $f (call $malloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 64)))
    (if (i32.or (i32.eqz (local.get $f))
          (call $args_sizes_get (i32.add (local.get $f) (i32.const 16))
                                (i32.add (local.get $f) (i32.const 36))))
      (then (call $proc_exit (i32.const 71)) (unreachable)))
    (local.set $argc (i32.load offset=16 (local.get $f)))
    (local.set $argv (call $malloc (i32.const 0) (i32.const 0) (i32.const 4)
      (i32.shl (i32.add (local.get $argc) (i32.const 1)) (i32.const 2))))
    (if (i32.or (i32.eqz (local.get $argv))
          (call $args_get (local.get $argv)
            (call $malloc (i32.const 0) (i32.const 0) (i32.const 1)
              (i32.add (i32.load offset=36 (local.get $f)) (i32.const 1)))))
      (then (call $proc_exit (i32.const 71)) (unreachable)))
    (i32.store (i32.add (local.get $argv) (i32.shl (local.get $argc) (i32.const 2))) (i32.const 0))
    (i32.store offset=20 (local.get $f) (local.get $argv))
    (i32.store offset=32 (local.get $f) (i32.const 0))
    ;; as the reactor's ruby-init does: ruby_init, then ruby_sysinit(&argc, &argv)
    (drop (call $rt (i32.const 0) (i32.const 0) (i32.const 0) (local.get $f)))
    (drop (call $rt (i32.const 1) (i32.add (local.get $f) (i32.const 16))
      (i32.add (local.get $f) (i32.const 20)) (local.get $f)))
    (local.set $n (call $rt (i32.const 2) (i32.load offset=16 (local.get $f))
      (i32.load offset=20 (local.get $f)) (local.get $f)))
    ;; ruby_executable_node: Qfalse (0), Qtrue (6) or a Fixnum (odd) is a status, not an
    ;; iseq (ruby_options printed why); ruby_run_node then cleans up and exits with it
    (if (i32.or (i32.eqz (local.get $n)) (i32.and (local.get $n) (i32.const 3)))
      (then
        (drop (call $rt (i32.const 4) (i32.const 0) (i32.const 0) (local.get $f)))
        (call $proc_exit
          (if (result i32) (i32.and (local.get $n) (i32.const 1))
            (then (i32.shr_s (local.get $n) (i32.const 1)))
            (else (i32.eqz (local.get $n)))))
        (unreachable)))
    (local.set $code
      (call $malloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const @CODE_SIZE@)))
    (if (i32.eqz (local.get $code)) (then (call $proc_exit (i32.const 71)) (unreachable)))
@CODE_STORES@
    (i32.store offset=24 (local.get $f) (local.get $code))
    (i32.store offset=28 (local.get $f) (i32.const @CODE_LENGTH@))
    (drop (call $rt (i32.const 3) (i32.add (local.get $f) (i32.const 24))
      (i32.add (local.get $f) (i32.const 32)) (local.get $f)))
    ;; ruby_cleanup: at_exit handlers, the uncaught exception's report, exit status, flush
    (call $proc_exit
      (call $rt (i32.const 4) (i32.load offset=32 (local.get $f)) (i32.const 0) (local.get $f)))
    (unreachable))
)
"""


class RubyRuntimeError(RuntimeError):
    """The pinned Ruby module is missing, cannot be fetched, or is not what was pinned."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- building the command module ------------------------------------------------------------
def _unwind_buf_address(reactor: wr.Module, names: dict[int, str]) -> int:
    """``rb_asyncify_unwind_buf``'s address, read from the reactor's own driver loop:
    in ``rb_abi_guest_ruby_init`` the first ``i32.const A; i32.load`` after the call to its
    thunk, which the loop then clears with ``i32.const A; i32.const 0; i32.store``."""
    index = {name: i for i, name in names.items()}
    loop, thunk = index["rb_abi_guest_ruby_init"], index["rb_abi_guest_ruby_init_thunk"]
    body = reactor.body(loop)
    ops = list(wr.instructions(body.raw, body.code_start, len(body.raw)))
    after = next(k for k, (op, _, imm) in enumerate(ops) if op == 0x10 and imm == thunk)
    for k in range(after, len(ops) - 1):
        if ops[k][0] == 0x41 and ops[k + 1][0] == 0x28 and ops[k + 1][2] == 0:
            address = ops[k][2]
            break
    else:
        raise RubyRuntimeError("cannot find rb_asyncify_unwind_buf in the reactor")
    cleared = any(
        ops[j][0] == 0x41 and ops[j][2] == address and ops[j + 1][0] == 0x41
        and ops[j + 1][2] == 0 and ops[j + 2][0] == 0x36 and ops[j + 2][2] == 0
        for j in range(after, len(ops) - 2)
    )
    if not cleared or address <= 0:
        raise RubyRuntimeError("the reactor's driver loop does not look as expected")
    return address


def build_command(reactor_bytes: bytes, debug_bytes: bytes, runner: str = RUNNER) -> bytes:
    """The WASI command module made from the npm reactor (see the module doc)."""
    import wasmtime

    reactor = wr.Module.parse(reactor_bytes)
    debug = wr.Module.parse(debug_bytes, with_code=False)
    for sid in (wr.SEC_TYPE, wr.SEC_IMPORT, wr.SEC_FUNCTION, wr.SEC_EXPORT, wr.SEC_ELEMENT):
        if reactor.section(sid) != debug.section(sid):
            raise RubyRuntimeError(f"the debug module's section {sid} differs from the reactor's")
    names = debug.names
    by_name: dict[str, int] = {}
    for i, name in names.items():
        by_name.setdefault(name, i)
    if len(by_name) != len(names):
        duplicated = {n for n in names.values() if list(names.values()).count(n) > 1}
        if duplicated & {*_INTERNALS, _EVAL_THUNK}:
            raise RubyRuntimeError(f"ambiguous function names: {sorted(duplicated)}")
    missing = [n for n in (*_INTERNALS, _EVAL_THUNK) if n not in by_name]
    if missing:
        raise RubyRuntimeError(f"the reactor has no {', '.join(missing)}")
    slots = wr.element_slots(reactor, by_name[_EVAL_THUNK])
    if len(slots) != 1:
        raise RubyRuntimeError(f"{_EVAL_THUNK} is in {len(slots)} table slots, expected 1")
    code = runner.encode() + b"\0"
    code += bytes(-len(code) % 4)
    stores = "\n".join(
        f"    (i32.store offset={k} (local.get $code) "
        f"(i32.const {int.from_bytes(code[k:k + 4], 'little', signed=True)}))"
        for k in range(0, len(code), 4)
    )
    wat = (
        _START_WAT.replace("@UNWIND_BUF@", str(_unwind_buf_address(reactor, names)))
        .replace("@EVAL_SLOT@", str(slots[0]))
        .replace("@CODE_SIZE@", str(len(code)))
        .replace("@CODE_LENGTH@", str(len(runner.encode())))
        .replace("@CODE_STORES@", stores)
    )
    extra = wr.Module.parse(wasmtime.wat2wasm(wat))

    def resolve(imp: wr.Import) -> int | tuple[str, str]:
        if imp.module == "wasi_snapshot_preview1":
            return (imp.module, imp.name)
        if imp.name in _EXPORTS_USED:
            index = reactor.export_index(imp.name)
        elif imp.name in _INTERNALS:
            index = by_name[imp.name]
        else:
            raise RubyRuntimeError(f"_start imports unknown {imp.name}")
        if reactor.func_type(index) != extra.types[imp.type_index]:
            raise RubyRuntimeError(f"{imp.name} does not have the type _start expects")
        return index

    foreign = {
        (imp.module, imp.name): wr.Stub()
        for imp in reactor.func_imports
        if imp.module != "wasi_snapshot_preview1"
    }
    command = wr.relink(
        reactor, stubs=foreign, extra=extra, resolve=resolve,
        exports=[("memory", wr.KIND_MEMORY, reactor.export_index("memory", wr.KIND_MEMORY)),
                 ("_start", wr.KIND_FUNC, "_start")],
    )
    try:
        wasmtime.Module.validate(wasmtime.Engine(), command)
    except wasmtime.WasmtimeError as exc:
        raise RubyRuntimeError(f"the rebuilt Ruby module does not validate: {exc}") from exc
    return command


# -- install --------------------------------------------------------------------------------
def install_dir(toolchain_dir: Path) -> Path:
    return toolchain_dir / f"ruby-{RUBY_VERSION}-npm{NPM_VERSION}-r{RECIPE_VERSION}"


def _members(staged: Path) -> dict[str, bytes]:
    """The pinned members of the package, fetched with npm into ``staged``."""
    wanted: dict[str, str | None] = {REACTOR_MEMBER: REACTOR_SHA256, DEBUG_MEMBER: DEBUG_SHA256,
                                     **dict.fromkeys(LICENSE_MEMBERS)}
    try:
        return PACKAGE.members(PACKAGE.pack(staged, "the Ruby runtime"), wanted,
                               _MAX_MEMBER_BYTES)
    except NpmPackageError as err:
        raise RubyRuntimeError(str(err)) from None


def ensure_installed(toolchain_dir: Path) -> Path:
    """The verified command module, fetched (npm pack) and built first if missing."""
    target = install_dir(toolchain_dir) / COMMAND_FILE
    try:
        return ruby_wasm_path(toolchain_dir)
    except RubyRuntimeError:
        pass
    toolchain_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(toolchain_dir / ".ruby.lock"):
        if not _matches(target):
            staged = Path(tempfile.mkdtemp(prefix=".ruby-", dir=toolchain_dir))
            try:
                files = _members(staged)
                command = build_command(files[REACTOR_MEMBER], files[DEBUG_MEMBER])
                if _sha256(command) != COMMAND_SHA256:
                    raise RubyRuntimeError(
                        f"the rebuilt Ruby module hashes to {_sha256(command)}, not the pinned "
                        f"{COMMAND_SHA256} (did build_command change? update COMMAND_SHA256)"
                    )
                out = staged / "out"
                out.mkdir()
                (out / COMMAND_FILE).write_bytes(command)
                for name in LICENSE_MEMBERS:
                    if name in files:
                        (out / Path(name).name).write_bytes(files[name])
                home = install_dir(toolchain_dir)
                shutil.rmtree(home, ignore_errors=True)
                out.rename(home)
                for old in toolchain_dir.glob("ruby-*"):  # earlier versions or recipes
                    if old != home and old.is_dir():
                        shutil.rmtree(old, ignore_errors=True)
            finally:
                shutil.rmtree(staged, ignore_errors=True)
    return ruby_wasm_path(toolchain_dir)


# -- use --------------------------------------------------------------------------------------
_verified: set[tuple[Path, int, int]] = set()
_lock = threading.Lock()


def _matches(path: Path) -> bool:
    try:
        return _sha256(path.read_bytes()) == COMMAND_SHA256
    except OSError:
        return False


def ruby_wasm_path(toolchain_dir: Path) -> Path:
    """Path of the verified command module (hashed once per process and file version)."""
    path = install_dir(toolchain_dir) / COMMAND_FILE
    try:
        st = path.stat()
    except OSError:
        raise RubyRuntimeError(
            f"the Ruby runtime is not installed at {path}: run `warden warm` "
            f"(it fetches {NPM_PACKAGE}@{NPM_VERSION} with npm)"
        ) from None
    key = (path, st.st_mtime_ns, st.st_size)
    with _lock:
        if key in _verified:
            return path
    if not _matches(path):
        raise RubyRuntimeError(
            f"{path} is not the pinned Ruby module (SHA-256 {COMMAND_SHA256}): "
            "delete it and run `warden warm`"
        )
    with _lock:
        _verified.add(key)
    return path


def ruby_wasm_bytes(toolchain_dir: Path) -> bytes:
    """The command module's bytes, re-checked against the pinned hash (they are read anew)."""
    path = ruby_wasm_path(toolchain_dir)
    data = path.read_bytes()
    if _sha256(data) != COMMAND_SHA256:
        with _lock:
            _verified.difference_update({k for k in _verified if k[0] == path})
        raise RubyRuntimeError(f"{path} changed after it was verified")
    return data


def ruby_args(script_path: str = SCRIPT_PATH, extra: Sequence[str] = ()) -> list[str]:
    """argv after argv[0], for ``Grants.args``: flags, the script, then the user's arguments."""
    return [*INTERPRETER_FLAGS, script_path, *extra]


def ruby_grants(program: bytes, tenant: Grants) -> Grants:
    """The tenant's grants with the program at ``/app/main.rb`` and the interpreter's argv."""
    return tenant.model_copy(update={
        "files": {**tenant.files, SCRIPT_FILE: program},
        "args": ruby_args(SCRIPT_PATH, tenant.args),
    })


__all__ = [
    "ARGV0",
    "BUILD",
    "COMMAND_SHA256",
    "INTERPRETER_FLAGS",
    "NPM_PACKAGE",
    "NPM_VERSION",
    "RUBY_MODULE_LIMIT_BYTES",
    "RUBY_VERSION",
    "SCRIPT_FILE",
    "SCRIPT_PATH",
    "RubyRuntimeError",
    "build_command",
    "ensure_installed",
    "ruby_args",
    "ruby_grants",
    "ruby_wasm_bytes",
    "ruby_wasm_path",
]
