"""The Ruby runtime (CRuby 3.4 for WASI, from npm ``@ruby/3.4-wasm-wasi``) through the real
Sandbox, and the re-linker that turns the npm reactor into a WASI command.

The command module is fetched and built once per machine into the toolchain dir (``npm
pack``, ~10 s; ``warden warm`` does the same); its compiled artifact is kept in a persistent
temp dir, so only the first session pays the 20-40 s compile of the 30 MB module. Tests that
go through ``SourceRunner`` and the languages registry need the ``ruby`` entry there.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from sandboxes.languages.toolchains import ruby_wasm
from sandboxes.languages.toolchains import wasm_relink as wr
from sandboxes.languages.toolchains.ruby_wasm import (
    ARGV0,
    RUBY_MODULE_LIMIT_BYTES,
    RubyRuntimeError,
    ruby_args,
    ruby_grants,
)
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.schema import Grants, Limits, RunResult, RunStatus, TrapKind
from sandboxes.settings import Settings, get_settings

LIMITS = Limits(module_bytes=RUBY_MODULE_LIMIT_BYTES, fuel=3_000_000_000, wall_time_s=20)
CACHE_DIR = Path(tempfile.gettempdir()) / "warden-test-ruby-wasm"
TOOLCHAIN_DIR = get_settings().toolchain_dir
# Things a run must never show: host files, host directory entries, the host's cwd.
HOST_MARKERS = (b"root:", b"pyproject", b"warden.egg-info", b"bin\n", b"\"etc\"", b"\"usr\"")


@pytest.fixture(scope="module")
def ruby_bytes() -> bytes:
    try:
        ruby_wasm.ruby_wasm_path(TOOLCHAIN_DIR)
    except RubyRuntimeError:
        if shutil.which("npm") is None:
            pytest.skip("the Ruby runtime is not installed and npm is missing to fetch it")
    ruby_wasm.ensure_installed(TOOLCHAIN_DIR)
    return ruby_wasm.ruby_wasm_bytes(TOOLCHAIN_DIR)


@pytest.fixture(scope="module")
def ruby_sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(Settings(data_dir=CACHE_DIR))
    try:
        yield sb
    finally:
        sb.compiler.close()


@pytest.fixture(scope="module")
def ruby(ruby_sandbox: Sandbox, ruby_bytes: bytes) -> tuple[Sandbox, Prepared]:
    # The first compile takes 20 s idle, a minute or more on a busy 2-core machine.
    return ruby_sandbox, ruby_sandbox.prepare(ruby_bytes, LIMITS, compile_timeout_s=600)


def run(
    ruby: tuple[Sandbox, Prepared],
    source: str,
    stdin: bytes = b"",
    limits: Limits = LIMITS,
    args: list[str] | None = None,
    files: dict[str, bytes] | None = None,
) -> RunResult:
    sb, prepared = ruby
    grants = ruby_grants(source.encode(), Grants(stdin=stdin, args=args or [], files=files or {}))
    return sb.run_prepared(prepared, limits, grants, argv0=ARGV0)


def assert_no_host_data(result: RunResult) -> None:
    for marker in HOST_MARKERS:
        assert marker not in result.stdout + result.stderr, (marker, result)


# -- the module and its files -----------------------------------------------------------------
def test_command_module_is_pinned_and_pure_wasi(ruby_bytes: bytes) -> None:
    module = wr.Module.parse(ruby_bytes, with_code=False)
    assert {imp.module for imp in module.imports} == {"wasi_snapshot_preview1"}
    assert [(name, kind) for name, kind, _ in module.exports] == [
        ("memory", wr.KIND_MEMORY), ("_start", wr.KIND_FUNC)
    ]
    path = ruby_wasm.ruby_wasm_path(TOOLCHAIN_DIR)
    assert path.name == "ruby.wasm" and path.stat().st_size == len(ruby_bytes)


def test_missing_module_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RubyRuntimeError, match=r"not installed.*warden warm"):
        ruby_wasm.ruby_wasm_path(tmp_path)


def test_tampered_module_is_rejected(tmp_path: Path) -> None:
    fake = ruby_wasm.install_dir(tmp_path) / "ruby.wasm"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"\0asm\x01\0\0\0")
    with pytest.raises(RubyRuntimeError, match="not the pinned Ruby module"):
        ruby_wasm.ruby_wasm_path(tmp_path)
    with pytest.raises(RubyRuntimeError):
        ruby_wasm.ruby_wasm_bytes(tmp_path)


def test_tarball_integrity_is_checked(tmp_path: Path) -> None:
    bogus = tmp_path / "ruby-3.4-wasm-wasi-2.10.1.tgz"
    bogus.write_bytes(b"not the tarball")
    with pytest.raises(RubyRuntimeError, match="integrity"):
        ruby_wasm._members(bogus)


def test_args_and_grants() -> None:
    args = ruby_args(extra=["x", "-v"])
    assert args[:2] == ["--disable-gems", "-EUTF-8"]
    assert args[-3:] == ["/app/main.rb", "x", "-v"]  # the user's flags come after the script
    grants = ruby_grants(b"puts 1", Grants(args=["a"], env={"X": "1"}, files={"app/lib.rb": b""}))
    assert grants.files == {"app/lib.rb": b"", "app/main.rb": b"puts 1"}
    assert grants.args[-2:] == ["/app/main.rb", "a"] and grants.env == {"X": "1"}


# -- running programs -------------------------------------------------------------------------
def test_hello(ruby: tuple[Sandbox, Prepared]) -> None:
    r = run(ruby, 'puts "hello #{RUBY_VERSION} #{ARGV.inspect} #{$0} #{__FILE__ == $0}"',
            args=["x", "--y"])
    assert r.status is RunStatus.OK, r
    assert r.stdout == b'hello 3.4.1 ["x", "--y"] /app/main.rb true\n'
    assert r.stderr == b""
    assert 0 < r.fuel_used < 250_000_000  # ~160 M (RubyGems would add ~600 M)


def test_stdin_echo(ruby: tuple[Sandbox, Prepared]) -> None:
    src = 'name = gets.chomp\nputs "hi #{name}"\np STDIN.read\np gets\nputs $stdin.eof?'
    r = run(ruby, src, stdin=b"ada\nrest\nof it")
    assert r.status is RunStatus.OK, r
    assert r.stdout == b'hi ada\n"rest\\nof it"\nnil\ntrue\n'


def test_exit_codes_and_at_exit(ruby: tuple[Sandbox, Prepared]) -> None:
    r = run(ruby, 'at_exit { puts "bye" }\nputs "before"\nexit 3')
    assert r.status is RunStatus.NONZERO_EXIT and r.exit_code == 3, r
    assert r.stdout == b"before\nbye\n"
    r = run(ruby, 'abort "bad"')
    assert (r.status, r.exit_code, r.stderr) == (RunStatus.NONZERO_EXIT, 1, b"bad\n")
    r = run(ruby, '$stdout.sync = true\nat_exit { puts "skipped" }\nputs "x"\nexit! 4')
    assert (r.exit_code, r.stdout) == (4, b"x\n")
    r = run(ruby, "exit true")
    assert r.status is RunStatus.OK and r.exit_code == 0, r


def test_runtime_error_backtrace(ruby: tuple[Sandbox, Prepared]) -> None:
    r = run(ruby, 'puts "out"\ndef f\n  raise ArgumentError, "boom"\nend\nf\n')
    assert r.status is RunStatus.NONZERO_EXIT and r.exit_code == 1, r
    assert r.stdout == b"out\n"
    assert r.stderr == (
        b"/app/main.rb:3:in 'Object#f': boom (ArgumentError)\n"
        b"\tfrom /app/main.rb:5:in '<main>'\n"
    )


def test_error_with_cause_and_nil(ruby: tuple[Sandbox, Prepared]) -> None:
    r = run(ruby, "begin\n  [1].fetch(5)\nrescue IndexError\n  raise TypeError, 'wrapped'\nend")
    assert r.status is RunStatus.NONZERO_EXIT, r
    assert b"/app/main.rb:4:in '<main>': wrapped (TypeError)" in r.stderr
    assert b"index 5 outside of array bounds" in r.stderr
    assert b"eval" not in r.stderr  # the runner's own frames are not shown
    r = run(ruby, "x = nil\nx.foo")
    assert r.stderr == (
        b"/app/main.rb:2:in '<main>': undefined method 'foo' for nil (NoMethodError)\n"
    )


def test_syntax_error(ruby: tuple[Sandbox, Prepared]) -> None:
    r = run(ruby, "puts 1\ndef (")
    assert r.status is RunStatus.NONZERO_EXIT and r.exit_code == 1, r
    assert r.stdout == b""  # nothing ran
    assert r.stderr.startswith(b"/app/main.rb: /app/main.rb:2: syntax errors found (SyntaxError)")


def test_stdlib_bundled_gems_data_and_fibers(ruby: tuple[Sandbox, Prepared]) -> None:
    src = (
        'require "json"\nrequire "prime"\nrequire "set"\nrequire "matrix"\n'
        "f = Fiber.new { Fiber.yield 1; 2 }\n"
        "p [JSON.generate({a: [1]}), Prime.first(4), Set[1, 1].size, Matrix[[1, 2]].rank,\n"
        '   f.resume, f.resume, "é".encoding, DATA.read]\n'
        "__END__\npayload"
    )
    r = run(ruby, src)
    assert r.status is RunStatus.OK, r
    assert r.stdout == (
        b'["{\\"a\\":[1]}", [2, 3, 5, 7], 1, 1, 1, 2, #<Encoding:UTF-8>, "payload"]\n'
    )


def test_require_relative_granted_file(ruby: tuple[Sandbox, Prepared]) -> None:
    r = run(ruby, 'require_relative "lib"\np VALUE', files={"app/lib.rb": b"VALUE = 7"})
    assert (r.status, r.stdout) == (RunStatus.OK, b"7\n"), r


def test_deep_recursion_is_a_ruby_error(ruby: tuple[Sandbox, Prepared]) -> None:
    r = run(ruby, "def r(n) = r(n + 1)\nr(0)")
    assert r.status is RunStatus.NONZERO_EXIT, r
    assert b"stack level too deep (SystemStackError)" in r.stderr


def test_infinite_loop_runs_out_of_fuel(ruby: tuple[Sandbox, Prepared]) -> None:
    r = run(ruby, "loop {}", limits=LIMITS.model_copy(update={"fuel": 500_000_000}))
    assert r.status is RunStatus.FUEL_EXHAUSTED, r


@pytest.mark.parametrize(
    "source", ['x = "a" * 10**9', 'a = []\nloop { a << ("x" * 1_000_000) }']
)
def test_memory_bomb(ruby: tuple[Sandbox, Prepared], source: str) -> None:
    # A start needs ~70 MiB: below that Ruby cannot even boot (that too is memory_limit).
    limits = LIMITS.model_copy(update={"memory_bytes": 160 * 1024 * 1024})
    r = run(ruby, source, limits=limits)
    assert r.status in (RunStatus.MEMORY_LIMIT, RunStatus.NONZERO_EXIT), r
    assert r.memory_peak_bytes <= limits.memory_bytes
    assert b"failed to allocate memory (NoMemoryError)" in r.stderr
    if "loop" in source:
        assert r.status is RunStatus.MEMORY_LIMIT


def test_js_bridge_traps(ruby: tuple[Sandbox, Prepared]) -> None:
    r = run(ruby, "require \"js\"\n$stdout.sync = true\nputs \"loaded\"\nJS.global")
    assert r.status is RunStatus.TRAP and r.trap_kind is TrapKind.UNREACHABLE, r
    assert r.stdout == b"loaded\n"


# -- hostile programs ---------------------------------------------------------------------------
def test_no_host_files(ruby: tuple[Sandbox, Prepared]) -> None:
    src = (
        'p((File.read("/etc/passwd") rescue $!.class))\n'
        'p((File.read("../../../../etc/passwd") rescue $!.class))\n'
        'p((Dir.entries("/etc") rescue $!.class))\n'
        'p Dir.entries("/").sort\n'
        'p Dir.children("/app")\n'
        'p Dir.glob("/usr/local/*").sort\n'
        'p((File.write("/app/x", "1") rescue $!.class))\n'
        'p((File.read("/proc/self/environ") rescue $!.class))\n'
        "p ENV.to_h\n"
    )
    r = run(ruby, src)
    assert r.status is RunStatus.OK, r
    assert r.stdout.decode().splitlines() == [
        "Errno::ENOENT",
        "Errno::EPERM",
        "Errno::ENOENT",
        '[".", "..", "app"]',  # the granted script only
        '["main.rb"]',
        '["/usr/local/bin", "/usr/local/lib", "/usr/local/share"]',  # the module's own vfs
        "Errno::EPERM",
        "Errno::ENOENT",
        "{}",
    ]
    assert_no_host_data(r)


@pytest.mark.parametrize(
    "source",
    [
        'p system("ls"); p system("cat /etc/passwd"); p $?',  # no processes: nothing runs
        "p((`ls /` rescue $!.class))",
        'p((IO.popen("ls") rescue $!.class))',
        'p((spawn("ls") rescue $!.class))',
        'p((exec("ls") rescue $!.class))',
        "fork",
        'p((open("|ls") rescue $!.class))',
    ],
)
def test_no_processes(ruby: tuple[Sandbox, Prepared], source: str) -> None:
    r = run(ruby, source)
    assert r.status in (RunStatus.OK, RunStatus.NONZERO_EXIT), r
    assert_no_host_data(r)
    if source == "fork":
        assert b"NotImplementedError" in r.stderr


def test_no_sockets(ruby: tuple[Sandbox, Prepared]) -> None:
    src = (
        'begin\n  require "socket"\nrescue LoadError => e\n  p e.class\nend\n'
        "p((Socket rescue $!.class))\n"
        'p((TCPSocket.new("127.0.0.1", 80) rescue $!.class))\n'
    )
    r = run(ruby, src)
    assert r.status is RunStatus.OK, r
    assert r.stdout == b"LoadError\nNameError\nNameError\n"


# -- the relinker on small modules -----------------------------------------------------------
_BASE_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "js" "foo" (func $foo (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (table 2 funcref)
  (elem (i32.const 0) $five $via_js)
  (global $g (mut funcref) (ref.func $five))
  (func $five (result i32) (i32.const 5))
  (func $via_js (result i32) (call $foo))
  (func (export "get") (param i32) (result i32) (call_indirect (result i32) (local.get 0)))
)
"""
_EXTRA_WAT = """
(module
  (import "env" "memory" (memory 1))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "base" "get" (func $get (param i32) (result i32)))
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (call $exit (i32.add (call $get (i32.load (i32.const 0))) (i32.const 0))))
)
"""


def _relinked() -> bytes:
    base = wr.Module.parse(wasmtime.wat2wasm(_BASE_WAT))
    extra = wr.Module.parse(wasmtime.wat2wasm(_EXTRA_WAT))

    def resolve(imp: wr.Import) -> int | tuple[str, str]:
        if imp.module == "base":
            return base.export_index(imp.name)
        return (imp.module, imp.name)

    return wr.relink(
        base, stubs={("js", "foo"): wr.Stub()}, extra=extra, resolve=resolve,
        exports=[("memory", wr.KIND_MEMORY, 0), ("_start", wr.KIND_FUNC, "_start")],
    )


def _run_command(wasm: bytes, argv: list[str]) -> int | str:
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = argv
    store.set_wasi(wasi)
    instance = linker.instantiate(store, wasmtime.Module(engine, wasm))
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    try:
        start(store)
    except wasmtime.ExitTrap as exc:
        return exc.code
    except wasmtime.Trap as exc:
        return "trap" if "unreachable" in str(exc) else str(exc)
    return "returned"


def test_relink_stubs_imports_and_appends_functions() -> None:
    wasm = _relinked()
    module = wr.Module.parse(wasm, with_code=False)
    assert [(i.module, i.name) for i in module.func_imports] == [
        ("wasi_snapshot_preview1", "fd_write"),
        ("wasi_snapshot_preview1", "proc_exit"),
        ("wasi_snapshot_preview1", "args_sizes_get"),
    ]
    # argc 1 calls table slot 1 (the stubbed import: traps); argc 0 slot 0 (returns 5).
    assert _run_command(wasm, ["x"]) == "trap"
    assert _run_command(wasm, []) == 5


def test_relink_refuses_what_it_does_not_understand() -> None:
    simd = wr.Module.parse(wasmtime.wat2wasm(
        "(module (func (drop (v128.const i64x2 0 0))))"
    ))
    with pytest.raises(wr.RelinkError, match="unsupported instruction"):
        wr.relink(simd, stubs={}, extra=wr.Module.parse(wasmtime.wat2wasm("(module)")),
                  resolve=lambda imp: 0, exports=[])
    base = wr.Module.parse(wasmtime.wat2wasm(_BASE_WAT))
    with pytest.raises(wr.RelinkError, match="no such imports"):
        wr.relink(base, stubs={("js", "bar"): wr.Stub()},
                  extra=wr.Module.parse(wasmtime.wat2wasm("(module)")), resolve=lambda imp: 0,
                  exports=[])
    with pytest.raises(wr.RelinkError, match="may not have section"):
        wr.relink(base, stubs={}, extra=base, resolve=lambda imp: 0, exports=[])


def test_remap_is_identity_without_maps() -> None:
    base = wr.Module.parse(wasmtime.wat2wasm(_BASE_WAT))
    for body in base.bodies:
        code, end = wr.remap_expr(body.raw, body.code_start, len(body.raw), wr.Remap())
        assert body.raw[: body.code_start] + code == body.raw and end == len(body.raw)


# -- through the languages registry and SourceRunner (needs the "ruby" entry) -----------------
def _registry_has_ruby() -> bool:
    from sandboxes.languages.registry import LANGUAGES

    return "ruby" in LANGUAGES


registry = pytest.mark.skipif(
    not _registry_has_ruby(), reason="the languages registry has no ruby entry yet"
)


@registry
def test_source_runner_runs_ruby(ruby_sandbox: Sandbox, ruby_bytes: bytes) -> None:
    from sandboxes.languages.registry import LANGUAGES
    from sandboxes.languages.source_runner import SourceRunner

    runner = SourceRunner(ruby_sandbox)
    grants = Grants(stdin=b"7\n", args=["a"])
    r = runner.run("ruby", 'p [$stdin.gets.to_i * 6, ARGV]\nexit 2', Limits(), grants)
    assert (r.status, r.exit_code, r.stdout) == (RunStatus.NONZERO_EXIT, 2, b'[42, ["a"]]\n'), r
    lang = LANGUAGES["ruby"]
    assert lang.interpreted and lang.file_name == "main.rb"
    assert lang.check_files(["app/x.rb"]) is not None  # /app is the runtime's
    clash = runner.run("ruby", "puts 1", Limits(), Grants(files={"app/main.rb": b"x"}))
    assert clash.status is RunStatus.UNSUPPORTED, clash


@registry
def test_source_runner_ruby_hostile(ruby_sandbox: Sandbox, ruby_bytes: bytes) -> None:
    from sandboxes.languages.source_runner import SourceRunner

    runner = SourceRunner(ruby_sandbox)
    src = 'p((File.read("/etc/passwd") rescue $!.class)); p Dir.entries("/"); system("ls")'
    r = runner.run("ruby", src, Limits(), Grants())
    assert r.status is RunStatus.OK, r
    assert r.stdout == b'Errno::ENOENT\n[".", "..", "app"]\n'
    assert_no_host_data(r)
