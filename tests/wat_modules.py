"""Hostile and ordinary modules in WAT text, shared by tests and benchmarks."""

from __future__ import annotations

_FD_WRITE = (
    '(import "wasi_snapshot_preview1" "fd_write" '
    "(func $fd_write (param i32 i32 i32 i32) (result i32)))"
)


def hello(text: str = "hello\n") -> str:
    return f"""(module {_FD_WRITE}
  (memory (export "memory") 1)
  (data (i32.const 64) "{text.replace(chr(10), chr(92) + 'n')}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {len(text.encode())}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


HELLO = hello()

LOOP = '(module (func (export "_start") (loop $l (br $l))))'

STDIN_READ_LOOP = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 16))
    (loop $l (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
             (br $l))))"""


def sleep(seconds: float) -> str:
    """One poll_oneoff with a relative monotonic clock subscription."""
    return f"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 42))                   ;; userdata
    (i32.store8 (i32.const 8) (i32.const 0))                   ;; tag: clock
    (i32.store (i32.const 16) (i32.const 1))                   ;; monotonic
    (i64.store (i32.const 24) (i64.const {int(seconds * 1e9)})) ;; timeout ns
    (i32.store16 (i32.const 40) (i32.const 0))                 ;; relative
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))))"""


RECURSE = """(module (func $f (param i32) (result i32)
    (call $f (i32.add (local.get 0) (i32.const 1))))
  (func (export "_start") (drop (call $f (i32.const 0)))))"""

GROW_PAGE_BY_PAGE = """(module (memory (export "memory") 1)
  (func (export "_start")
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))"""

GROW_4GIB = """(module (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 65535)) (i32.const -1)) (then unreachable))))"""

INITIAL_4GIB = '(module (memory (export "memory") 65536) (func (export "_start")))'

TABLE_BOMB_INITIAL = '(module (table 10000000 funcref) (func (export "_start")))'

TABLE_BOMB_GROW = """(module (table $t 1 funcref)
  (func (export "_start")
    (loop $l (br_if $l (i32.ne (table.grow $t (ref.null func) (i32.const 100000))
                               (i32.const -1))))
    unreachable))"""


def flood(fd: int) -> str:
    """Writes 4 KiB to ``fd`` forever."""
    return f"""(module {_FD_WRITE} (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 4096))
    (loop $l (drop (call $fd_write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8)))
             (br $l))))"""


HUGE_WRITE = f"""(module {_FD_WRITE} (memory (export "memory") 1024)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 0)) (i32.store (i32.const 4) (i32.const 67108864))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""

PROC_EXIT = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))"""

UNREACHABLE = '(module (func (export "_start") unreachable))'

DIV_ZERO = """(module (func (export "_start")
  (drop (i32.div_s (i32.const 1) (i32.const 0)))))"""

GETENV_HOME = """(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (call $exit (i32.load (i32.const 0)))))"""

FOREIGN_IMPORT = """(module (import "env" "host_secret" (func $f (result i32)))
  (func (export "_start") (drop (call $f))))"""

UNKNOWN_WASI_IMPORT = """(module
  (import "wasi_snapshot_preview1" "not_a_real_call" (func $f (result i32)))
  (func (export "_start") (drop (call $f))))"""

NO_START = '(module (func (export "main")))'

WAT_SYNTAX_ERROR = "(module (func (export \"_start\") (i32.const 1)"
