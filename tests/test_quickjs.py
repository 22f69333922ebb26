"""The JavaScript interpreter (QuickJS-NG + Warden's driver) through the real Sandbox.

The module is built once per source version into ~/.cache/warden-test-quickjs (about a
minute the first time: zig compiles quickjs.c), then every test runs it with
``argv = ["qjs", "/app/main.js", *args]`` and the script as a granted read-only file.
"""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

from sandboxes.languages.toolchains.quickjs import build
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.schema import Grants, Limits, RunResult, RunStatus, TrapKind

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ziglang") is None, reason="needs PyPI ziglang to build QuickJS"
)

CACHE = Path.home() / ".cache" / "warden-test-quickjs"
LIMITS = Limits(fuel=2_000_000_000, wall_time_s=20)


@pytest.fixture(scope="module")
def qjs_wasm() -> bytes:
    return build.ensure_built(CACHE).read_bytes()


@pytest.fixture(scope="module")
def prepared(sandbox: Sandbox, qjs_wasm: bytes) -> Prepared:
    return sandbox.prepare(qjs_wasm, LIMITS)


def run_js(
    sandbox: Sandbox,
    prepared: Prepared,
    source: str,
    stdin: bytes = b"",
    args: list[str] | None = None,
    limits: Limits = LIMITS,
    files: dict[str, bytes] | None = None,
    env: dict[str, str] | None = None,
) -> RunResult:
    grants = Grants(
        args=["/app/main.js", *(args or [])],
        files={"app/main.js": source.encode(), **(files or {})},
        stdin=stdin,
        env=env or {},
    )
    return sandbox.run_prepared(prepared, limits, grants, argv0="qjs")


def out(result: RunResult) -> str:
    return result.stdout.decode()


def err(result: RunResult) -> str:
    return result.stderr.decode()


# -- output -------------------------------------------------------------------------------
def test_hello(sandbox: Sandbox, prepared: Prepared) -> None:
    result = run_js(sandbox, prepared, 'console.log("hello")')
    assert result.status is RunStatus.OK, result
    assert result.exit_code == 0
    assert result.stdout == b"hello\n"
    assert result.stderr == b""


def test_print_alias_and_stream_routing(sandbox: Sandbox, prepared: Prepared) -> None:
    source = """
      print("p", 1);
      console.info("i");
      console.debug("d");
      console.error("e", 2);
      console.warn("w");
      process.stdout.write("raw");
      process.stderr.write("RAW");
    """
    result = run_js(sandbox, prepared, source)
    assert result.status is RunStatus.OK, result
    assert out(result) == "p 1\ni\nd\nraw"
    assert err(result) == "e 2\nw\nRAW"


def test_formatting_like_node(sandbox: Sandbox, prepared: Prepared) -> None:
    source = r"""
      console.log(1, -0, 1.5, true, null, undefined, 10n, Symbol("s"));
      console.log({ a: 1, b: "x", c: [1, 2, 3], d: { e: { f: { g: 1 } } } });
      console.log([1, , 3], new Map([["k", 1]]), new Set([1]), [], {});
      console.log("%s is %d years and %i%%", "Bob", 42.5, 7.9, "extra");
      console.log(function foo() {}, class Bar {}, () => 1);
      console.log(["it's"], new Uint8Array([1, 2]));
      const circ = { name: "c" }; circ.self = circ; console.log(circ);
      console.log(new Error("inner").message);
    """
    result = run_js(sandbox, prepared, source)
    assert result.status is RunStatus.OK, result
    assert out(result).splitlines() == [
        "1 -0 1.5 true null undefined 10n Symbol(s)",
        "{ a: 1, b: 'x', c: [ 1, 2, 3 ], d: { e: { f: [Object] } } }",
        "[ 1, <1 empty item>, 3 ] Map(1) { 'k' => 1 } Set(1) { 1 } [] {}",
        "Bob is 42.5 years and 7% extra",
        "[Function: foo] [class Bar] [Function (anonymous)]",
        "[ \"it's\" ] Uint8Array(2) [ 1, 2 ]",
        "{ name: 'c', self: [Circular *1] }",
        "inner",
    ]


def test_c_fast_path_prints_exactly_like_the_js_formatter(
    sandbox: Sandbox, prepared: Prepared
) -> None:
    # Flat arrays/objects are printed in C; "%O" always goes through inspect.js.
    source = r"""
      class K { constructor() { this.a = 1; } }
      const extra = [1, 2]; extra.x = 3;
      const values = [
        [], {}, [1, 2, 3], [1, "a", null, undefined, true, -0, 1n], ["it's"], ["a\nb"],
        { a: 1, "b-c": 2 }, { 1: "a", b: 2 }, { a: {} }, [[1]], [1, , 3], [1, 2, 3, 4, 5, 6, 7],
        ["x".repeat(30), "y".repeat(30), "z".repeat(30)], Object.create(null), new K(), extra,
        { get g() { return 1; } }, { [Symbol("s")]: 1 }, ["héllo ✓"], ["\x85"], ["\ud800"],
        { a: 1, b: "two", c: 3.5, d: false, e: null, f: undefined, g: 7n },
        { $x: 1, _y: 2 }, [1.5e300, NaN, -Infinity], [function f() {}], [Symbol("t")],
        [1, 2, 3, 4, 5, 6], { k1: "a".repeat(20), k2: "b".repeat(20), k3: "c".repeat(20) },
      ];
      for (const v of values) {
        console.log(v); console.log("~~"); console.log("%O", v); console.log("----");
      }
    """
    result = run_js(sandbox, prepared, source)
    assert result.status is RunStatus.OK, result
    chunks = out(result).split("----\n")[:-1]
    assert len(chunks) == 28
    for chunk in chunks:
        fast, slow = chunk.split("~~\n")
        assert fast == slow


def test_long_arrays_are_grouped_and_capped(sandbox: Sandbox, prepared: Prepared) -> None:
    result = run_js(sandbox, prepared, "console.log(Array.from({ length: 150 }, (_, i) => i))")
    assert result.status is RunStatus.OK, result
    text = out(result)
    assert text.startswith("[\n   0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11,\n  12, 13,")
    assert text.endswith("  96, 97, 98, 99,\n  ... 50 more items\n]\n")


# -- stdin --------------------------------------------------------------------------------
def test_read_stdin_echo(sandbox: Sandbox, prepared: Prepared) -> None:
    data = "line one\nline two\nünïcödé ✓\n"
    result = run_js(sandbox, prepared, "process.stdout.write(readStdin())", data.encode())
    assert result.status is RunStatus.OK, result
    assert out(result) == data


def test_readline_loop(sandbox: Sandbox, prepared: Prepared) -> None:
    source = """
      let line, n = 0, sum = 0;
      while ((line = readline()) !== null) { n++; sum += Number(line); }
      console.log(n, sum, readline(), JSON.stringify(readStdin()));
    """
    result = run_js(sandbox, prepared, source, b"1\r\n2\n3\n\n40")
    assert result.status is RunStatus.OK, result
    assert out(result) == '5 46 null ""\n'


def test_readline_then_read_stdin(sandbox: Sandbox, prepared: Prepared) -> None:
    source = """
      const n = Number(readline());
      const rest = readStdin().trim().split(/\\s+/).map(Number);
      console.log(n, rest.length, rest.reduce((a, b) => a + b, 0));
    """
    result = run_js(sandbox, prepared, source, b"3\n10 20\n30\n")
    assert result.status is RunStatus.OK, result
    assert out(result) == "3 3 60\n"


def test_empty_stdin(sandbox: Sandbox, prepared: Prepared) -> None:
    result = run_js(sandbox, prepared, 'console.log(readline(), JSON.stringify(readStdin()))')
    assert out(result) == 'null ""\n'


def test_large_stdin(sandbox: Sandbox, prepared: Prepared) -> None:
    data = b"".join(b"%d\n" % i for i in range(200_000))
    source = """
      let n = 0, s = 0, line;
      while ((line = readline()) !== null) { n++; s += +line; }
      console.log(n, s);
    """
    result = run_js(sandbox, prepared, source, data, limits=Limits(fuel=20_000_000_000))
    assert result.status is RunStatus.OK, result
    assert out(result) == f"200000 {sum(range(200_000))}\n"


# -- async --------------------------------------------------------------------------------
def test_promises_and_async_await_order(sandbox: Sandbox, prepared: Prepared) -> None:
    source = """
      console.log(1);
      Promise.resolve().then(() => console.log(3));
      async function f() { await null; return 5; }
      console.log(2);
      const v = await f();
      console.log(4, v);
      setTimeout(() => console.log("t20"), 20);
      setTimeout((a, b) => console.log("t10", a, b), 10, "x", "y");
      const id = setTimeout(() => console.log("never"), 5);
      clearTimeout(id);
      await new Promise((resolve) => setTimeout(resolve, 1));
      console.log("slept");
    """
    result = run_js(sandbox, prepared, source)
    assert result.status is RunStatus.OK, result
    assert out(result).splitlines() == ["1", "2", "3", "4 5", "slept", "t10 x y", "t20"]


def test_sloppy_script_globals_with_top_level_await(
    sandbox: Sandbox, prepared: Prepared
) -> None:
    source = "var g = 1; undeclared = 2; await 0; console.log(globalThis.g, globalThis.undeclared)"
    result = run_js(sandbox, prepared, source)
    assert result.status is RunStatus.OK, result
    assert out(result) == "1 2\n"


def test_es_module_imports_granted_file(sandbox: Sandbox, prepared: Prepared) -> None:
    source = 'import { x } from "./lib.js";\nconsole.log(x, await Promise.resolve("tla"));'
    result = run_js(
        sandbox, prepared, source, files={"app/lib.js": b"export const x = 42;"}
    )
    assert result.status is RunStatus.OK, result
    assert out(result) == "42 tla\n"


# -- errors and exit codes ----------------------------------------------------------------
def test_uncaught_throw_prints_stack_and_exits_1(sandbox: Sandbox, prepared: Prepared) -> None:
    source = 'function f() { throw new TypeError("boom"); }\nconsole.log("before");\nf();'
    result = run_js(sandbox, prepared, source)
    assert result.status is RunStatus.NONZERO_EXIT, result
    assert result.exit_code == 1
    assert out(result) == "before\n"  # stdout buffered before the throw still arrives
    assert err(result).startswith("Uncaught TypeError: boom\n")
    assert "at f (/app/main.js:1:" in err(result)


def test_uncaught_non_error_value(sandbox: Sandbox, prepared: Prepared) -> None:
    result = run_js(sandbox, prepared, 'throw "plain string"')
    assert result.exit_code == 1
    assert err(result) == "Uncaught 'plain string'\n"


def test_syntax_error(sandbox: Sandbox, prepared: Prepared) -> None:
    result = run_js(sandbox, prepared, "let x = ;")
    assert result.status is RunStatus.NONZERO_EXIT and result.exit_code == 1
    assert "SyntaxError" in err(result)


def test_unhandled_rejection_exits_1(sandbox: Sandbox, prepared: Prepared) -> None:
    source = 'console.log("x"); Promise.reject(new RangeError("nope"));'
    result = run_js(sandbox, prepared, source)
    assert result.status is RunStatus.NONZERO_EXIT, result
    assert result.exit_code == 1
    assert out(result) == "x\n"
    assert err(result).startswith("Uncaught (in promise) RangeError: nope")


def test_rejected_async_main(sandbox: Sandbox, prepared: Prepared) -> None:
    result = run_js(sandbox, prepared, 'await null; throw new Error("late")')
    assert result.exit_code == 1
    assert "Error: late" in err(result)


def test_rejection_handled_later_in_same_tick_is_fine(
    sandbox: Sandbox, prepared: Prepared
) -> None:
    source = """
      const p = Promise.reject(new Error("handled"));
      p.catch((e) => console.log("caught", e.message));
    """
    result = run_js(sandbox, prepared, source)
    assert result.status is RunStatus.OK, result
    assert out(result) == "caught handled\n"


def test_process_exit_flushes_and_sets_code(sandbox: Sandbox, prepared: Prepared) -> None:
    result = run_js(sandbox, prepared, 'console.log("bye"); process.exit(3); console.log("no")')
    assert result.status is RunStatus.NONZERO_EXIT
    assert result.exit_code == 3
    assert out(result) == "bye\n"
    ok = run_js(sandbox, prepared, 'console.log("a"); exit(0)')
    assert ok.status is RunStatus.OK and out(ok) == "a\n"
    big = run_js(sandbox, prepared, "process.exit(200)")  # WASI rejects >= 126
    assert big.status is RunStatus.NONZERO_EXIT and big.exit_code == 1


def test_args(sandbox: Sandbox, prepared: Prepared) -> None:
    source = "console.log(JSON.stringify(scriptArgs), JSON.stringify(process.argv))"
    result = run_js(sandbox, prepared, source, args=["a", "b c"])
    assert out(result) == (
        '["/app/main.js","a","b c"] ["qjs","/app/main.js","a","b c"]\n'
    )


# -- limits -------------------------------------------------------------------------------
def test_infinite_loop_runs_out_of_fuel(sandbox: Sandbox, prepared: Prepared) -> None:
    result = run_js(sandbox, prepared, "while (true) {}", limits=Limits(fuel=100_000_000))
    assert result.status is RunStatus.FUEL_EXHAUSTED, result


def test_memory_bomb_is_contained(sandbox: Sandbox, prepared: Prepared) -> None:
    limits = Limits(memory_bytes="32MiB", fuel=20_000_000_000)
    source = 'const a = []; while (true) a.push("x".repeat(1000) + a.length);'
    result = run_js(sandbox, prepared, source, limits=limits)
    assert result.status is RunStatus.MEMORY_LIMIT, result
    assert result.memory_peak_bytes <= 32 * 2**20
    assert "out of memory" in err(result)
    # One huge allocation is refused cleanly too (an exception, not a trap).
    big = run_js(sandbox, prepared, "const a = new Array(1e8).fill(1.5)", limits=limits)
    assert big.status in (RunStatus.MEMORY_LIMIT, RunStatus.NONZERO_EXIT), big
    assert "out of memory" in err(big) or "RangeError" in err(big)


def test_deep_recursion_is_a_range_error(sandbox: Sandbox, prepared: Prepared) -> None:
    source = """
      let depth = 0;
      function d() { depth++; d(); }
      try { d(); } catch (e) { console.log(e instanceof RangeError, depth > 500); }
      const viaMap = () => [1].map(viaMap);
      try { viaMap(); } catch (e) { console.log(e.name); }
      function r(n) { return r(n + 1) + 1; }
      r(0);
    """
    result = run_js(sandbox, prepared, source)
    assert out(result) == "true true\nRangeError\n"
    assert result.status is RunStatus.NONZERO_EXIT, result  # not a wasm trap
    assert err(result).startswith("Uncaught RangeError: Maximum call stack size exceeded")


def test_stack_size_option_for_a_bigger_wasm_stack(sandbox: Sandbox, qjs_wasm: bytes) -> None:
    limits = Limits(fuel=2_000_000_000, stack_bytes="2MiB")
    source = (
        b"let n = 0; function d() { n++; d(); }\n"
        b"try { d(); } catch (e) { console.log(e.name, n); }"
    )
    grants = Grants(args=["--stack-size=524288", "/app/main.js"], files={"app/main.js": source})
    result = sandbox.run(qjs_wasm, limits, grants)  # argv0 is main.wasm here: irrelevant
    assert result.status is RunStatus.OK, result
    name, depth = out(result).split()
    assert name == "RangeError" and int(depth) > 1400
    bad = sandbox.run(qjs_wasm, limits, Grants(args=["--stack-size=10", "/app/main.js"]))
    assert bad.exit_code == 2 and "--stack-size" in err(bad)


def test_deeply_nested_data_is_a_clean_failure(sandbox: Sandbox, prepared: Prepared,
                                               qjs_wasm: bytes) -> None:
    # Native recursion in JSON.stringify is not covered by the JS stack budget: with a
    # small wasm stack it ends in a stack-overflow trap; with the default 8 MiB it gets deep
    # enough for QuickJS's cycle check (linear in the depth at every level) to run out of
    # fuel. Either is a clean, classified result, and the process carries on.
    source = "let o = {}; for (let i = 0; i < 1e5; i++) o = { o }; JSON.stringify(o);"
    small_limits = LIMITS.model_copy(update={"stack_bytes": 256 * 1024})
    small_stack = sandbox.prepare(qjs_wasm, small_limits.model_copy(
        update={"module_bytes": len(qjs_wasm)}))
    small = run_js(sandbox, small_stack, source, limits=small_limits)
    assert (small.status, small.trap_kind) == (RunStatus.TRAP, TrapKind.STACK_OVERFLOW), small
    default = run_js(sandbox, prepared, source)
    assert default.status is RunStatus.FUEL_EXHAUSTED, default
    assert run_js(sandbox, prepared, 'console.log("ok")').stdout == b"ok\n"


# -- isolation ----------------------------------------------------------------------------
def test_no_std_os_require_or_host_files(sandbox: Sandbox, prepared: Prepared) -> None:
    source = """
      const tries = {
        std: () => std.loadFile("/etc/passwd"),
        os: () => os.exec(["/bin/sh", "-c", "id"]),
        require: () => require("fs"),
        fetch: () => fetch("http://example.com"),
      };
      for (const [name, f] of Object.entries(tries)) {
        try { f(); console.log(name, "WORKED"); } catch (e) { console.log(name, e.name); }
      }
      for (const spec of ["fs", "std", "/etc/passwd", "../../etc/passwd", "/proc/self/environ"]) {
        try { await import(spec); console.log(spec, "IMPORTED"); }
        catch (e) { console.log(spec, e.name); }
      }
      console.log(typeof std, typeof os, typeof require, typeof module, typeof Deno);
      console.log(JSON.stringify(process.env));
    """
    result = run_js(sandbox, prepared, source)
    assert result.status is RunStatus.OK, result
    text = out(result)
    assert "WORKED" not in text and "IMPORTED" not in text
    assert "std ReferenceError" in text and "os ReferenceError" in text
    assert "require ReferenceError" in text and "fetch ReferenceError" in text
    assert "undefined undefined undefined undefined undefined" in text
    assert text.endswith("{}\n")  # no host environment leaks in
    assert "root:" not in text


def test_env_only_as_granted(sandbox: Sandbox, prepared: Prepared) -> None:
    result = run_js(
        sandbox, prepared, "console.log(JSON.stringify(process.env))", env={"ONLY": "this"}
    )
    assert out(result) == '{"ONLY":"this"}\n'


def test_runs_are_independent(sandbox: Sandbox, prepared: Prepared) -> None:
    first = run_js(sandbox, prepared, "globalThis.leak = 1; console.log(typeof leak)")
    second = run_js(sandbox, prepared, "console.log(typeof leak)")
    assert out(first) == "number\n" and out(second) == "undefined\n"


def test_per_run_state_is_fresh_after_snapshot(sandbox: Sandbox, prepared: Prepared) -> None:
    # The module is pre-initialised at build time: randomness and clocks must be per run.
    source = """
      const t = performance.now();
      console.log(Math.random(), t >= 0 && t < 10000,
                  Math.abs(performance.timeOrigin - Date.now()) < 60000);
    """
    first, second = (run_js(sandbox, prepared, source) for _ in range(2))
    a, b = out(first).split(), out(second).split()
    assert a[1:] == b[1:] == ["true", "true"]
    assert a[0] != b[0]


def test_eval_flag_runs_source_from_argv(sandbox: Sandbox, prepared: Prepared) -> None:
    grants = Grants(args=["-e", "console.log(6 * 7, scriptArgs.slice(2))", "x"])
    result = sandbox.run_prepared(prepared, LIMITS, grants, argv0="qjs")
    assert result.status is RunStatus.OK, result
    assert out(result) == "42 [ 'x' ]\n"


def test_missing_script(sandbox: Sandbox, prepared: Prepared) -> None:
    grants = Grants(args=["/app/absent.js"])
    result = sandbox.run_prepared(prepared, LIMITS, grants, argv0="qjs")
    assert result.status is RunStatus.NONZERO_EXIT and result.exit_code == 2
    assert "cannot read /app/absent.js" in err(result)


def test_snapshot_rewrite_rejects_foreign_modules() -> None:
    with pytest.raises(build.BuildError):
        build.rewrite_snapshot(b"\0asm\x01\0\0\0", bytes(65536))
    with pytest.raises(build.BuildError):
        build.rewrite_snapshot(b"not wasm", b"")


# -- build script -------------------------------------------------------------------------
def test_toolchain_version() -> None:
    assert build.toolchain_version().startswith(f"QuickJS-NG {build.QUICKJS_ENGINE_VERSION}")
    assert "warden driver" in build.toolchain_version()


def test_unpack_rejects_unpinned_archive(tmp_path: Path) -> None:
    evil = tmp_path / build._SDIST_NAME
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"int x;"
        info = tarfile.TarInfo(f"quickjs_ng-{build.QUICKJS_NG_VERSION}/upstream-quickjs/../../x.c")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    evil.write_bytes(buf.getvalue())
    with pytest.raises(build.BuildError):
        build.unpack_engine(evil, tmp_path / "out")
    assert not (tmp_path / "x.c").exists()
