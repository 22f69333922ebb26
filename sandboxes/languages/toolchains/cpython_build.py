"""Build an optimised CPython 3.13 for WASI (wasm32-wasip1) from pinned registry sources.

Reproduces the build measured in docs/notes/python-optimised-build.md::

    python -m sandboxes.languages.toolchains.cpython_build OUT_DIR [--work DIR] [--jobs 2]

Sources and tools, nothing else:

* CPython: the upstream tarball as Debian ships it (``python3.13_3.13.5.orig.tar.xz`` from the
  trixie ``python3.13`` source package, fetched with ``apt-get source --download-only`` through
  a private sources list, so the system's apt configuration is not touched), checked against
  a pinned SHA-256. Debian's own patches are not applied. ``--source TARBALL`` uses a local
  copy of the same file instead (same hash check).
* zlib: Debian trixie's ``zlib`` source package (1.3.1), same fetch and hash check, built
  with the cross compiler below into a static ``libz.a`` for CPython's ``zlib`` module.
* The build interpreter: the same sources built natively with the system ``gcc``/``make``
  (CPython cross-builds need a build Python of the same version).
* The cross compiler: PyPI ``ziglang`` (``python -m ziglang cc -target wasm32-wasi``; zig's
  bundled wasi-libc), driven through three small wrapper scripts in place of wasi-sdk's
  ``clang``/``llvm-ar``/``ranlib``, with CPython's own ``Tools/wasm/config.site-wasm32-wasi``.

Changes to CPython's default WASI build (each explained where it is made):

* the whole stdlib is frozen into the interpreter (``Tools/build/freeze_modules.py``),
  except tests, GUI, REPL, packaging tools and packages whose C half this build lacks
  (``FREEZE_EXCLUDE``): no stdlib zip or directory is needed at run time;
* a frozen ``sitecustomize`` that calls ``gc.freeze()``;
* pymalloc on;
* work-arounds for zig's wasi-libc: a ``CONFIG_SITE`` addendum, a small C shim (netdb stubs;
  a fix for ``pthread_key_delete`` looping forever at exit), ``-DSOCK_RAW=3`` for
  ``_socket``, and a compiler wrapper that drops ``-Wl,--stack-first`` and adds
  ``-Wno-date-time``.

Outputs in OUT_DIR:

* ``python.wasm``: the interpreter, a WASI preview1 command (no debug info), stdlib inside.
  Run it with argv ``["python", "-s", "/app/main.py"]`` and ``PYTHONHOME=/usr/local`` (without
  it, CPython's path search prints "Could not find platform independent libraries").
* ``python313.zip``: optional, 58 KB: ``_sysconfigdata__wasi_wasm32-wasi``, the one module
  that cannot be frozen (not an identifier). Only ``sysconfig.get_config_vars()`` needs it;
  grant it read-only at ``usr/local/lib/python313.zip`` if that matters.
* ``BUILD-INFO.json``: versions, flags, hashes and sizes of both files, step timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Final

from sandboxes.languages.toolchains.wasm_bytes import sha256_file

CPYTHON_VERSION: Final = "3.13.5"
DEBIAN_SOURCE_PACKAGE: Final = "python3.13"
#: The Debian source version the tarball was taken from (the orig tarball is upstream's).
DEBIAN_VERSION: Final = "3.13.5-2+deb13u5"
DEBIAN_MIRROR: Final = "http://deb.debian.org/debian"
DEBIAN_SUITE: Final = "trixie"
ORIG_TARBALL: Final = "python3.13_3.13.5.orig.tar.xz"
ORIG_SHA256: Final = "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"
SOURCE_DIR_NAME: Final = f"Python-{CPYTHON_VERSION}"
#: zlib for the ``zlib`` module (gzip, zipfile deflate), from the same suite; Debian's
#: "dfsg" tarball is zlib 1.3.1 minus non-free contrib files (the library sources are intact).
ZLIB_SOURCE_PACKAGE: Final = "zlib"
ZLIB_DEBIAN_VERSION: Final = "1:1.3.dfsg+really1.3.1-1"
ZLIB_TARBALL: Final = "zlib_1.3.dfsg+really1.3.1.orig.tar.gz"
ZLIB_SHA256: Final = "60dd315c07f616887caa029408308a018ace66e3d142726a97db164b3b8f69fb"
ZLIB_DIR_NAME: Final = "zlib-1.3.1"
#: Without zlib's own configure: _LARGEFILE64_SOURCE makes gzguts.h declare lseek (through
#: unistd.h); without it gzlib.c fails on an undeclared lseek.
ZLIB_CFLAGS: Final[tuple[str, ...]] = ("-O2", "-D_LARGEFILE64_SOURCE=1", "-DHAVE_HIDDEN")
ZLIB_SOURCES: Final[tuple[str, ...]] = (
    "adler32", "compress", "crc32", "deflate", "gzclose", "gzlib", "gzread", "gzwrite",
    "infback", "inffast", "inflate", "inftrees", "trees", "uncompr", "zutil",
)
ZIGLANG_VERSION: Final = "0.17.1"

HOST_TRIPLE: Final = "wasm32-wasip1"
#: Optimisation flags of the interpreter (configure's ``OPT``; CPython's default is -O3 -g).
OPT_FLAGS: Final = "-DNDEBUG -O2"
#: ``-s``: no debug info in the module.
HOST_LDFLAGS: Final = "-s"
CONFIGURE_ARGS: Final[tuple[str, ...]] = (
    "--prefix=/usr/local",
    "--disable-test-modules",
    "--without-ensurepip",
    # No libmpdec in zig's sysroot: build _decimal from CPython's bundled copy.
    "--without-system-libmpdec",
    # Off by default on WASI; on here (arenas come from malloc, see _CONFIG_SITE_EXTRA):
    # -20 % fuel on an allocation-heavy loop, start-up unchanged.
    "--with-pymalloc",
)
#: Linker flags of CPython's WASI recipe that zig's linker rejects (dropped by the wrapper).
DROPPED_LINK_FLAGS: Final[tuple[str, ...]] = ("-Wl,--stack-first",)

WASM_NAME: Final = "python.wasm"
STDLIB_ZIP_NAME: Final = "python313.zip"
#: Where the zip must appear in the guest (with ``PYTHONHOME=/usr/local``).
STDLIB_GUEST_PATH: Final = f"/usr/local/lib/{STDLIB_ZIP_NAME}"
_FREEZE_LINE_OFF: Final = "        #'<encodings.*>',\n"
_FREEZE_LINE_ON: Final = "        '<encodings.*>',\n"
_FREEZE_ANCHOR: Final = "    # (End of stuff you could delete.)\n"
#: Already frozen by CPython's own list (or not to be frozen at all).
_ALREADY_FROZEN: Final = frozenset({
    "abc", "codecs", "io", "_collections_abc", "_sitebuiltins", "genericpath", "ntpath",
    "posixpath", "os", "site", "stat", "runpy", "zipimport", "__hello__", "__phello__",
    "encodings",
})
#: Stdlib parts not frozen: tests, GUI, REPL, packaging tools, docs data, and packages whose
#: C half does not exist in this build (_ctypes, _sqlite3, _curses, _multiprocessing).
FREEZE_EXCLUDE: Final = frozenset({
    "test", "idlelib", "tkinter", "turtledemo", "turtle", "ensurepip", "venv", "pydoc_data",
    "_pyrepl", "site-packages", "ctypes", "sqlite3", "curses", "multiprocessing", "dbm",
    "__pycache__", "lib2to3",
})
#: ``sitecustomize`` (frozen like the rest): ``site`` imports it at every start, and would
#: otherwise search the whole ``sys.path`` for it. ``gc.freeze()`` moves every object made
#: during start-up to the permanent generation, which no collection scans: the collection
#: in ``Py_FinalizeEx`` (and every full collection while user code runs) skips them. It
#: saves ~10 M fuel on ``print(1)``; the cost is that start-up garbage in cycles is never
#: reclaimed (start-up objects live until exit anyway).
_SITECUSTOMIZE_PY: Final = (
    '"""Warden build: frozen in; runs after site at every start."""\n'
    "import gc\n"
    "\n"
    "gc.freeze()\n"
    "del gc\n"
)

#: Extra ``CONFIG_SITE`` answers: zig's wasi-libc headers declare these, its libc does not
#: define them (configure's compile-only checks would say yes and the link would fail).
_CONFIG_SITE_EXTRA: Final = """
ac_cv_header_sys_epoll_h=no
ac_cv_func_epoll_create=no
ac_cv_func_epoll_create1=no
ac_cv_header_sys_timerfd_h=no
ac_cv_func_timerfd_create=no
ac_cv_func_setgroups=no
ac_cv_header_libintl_h=no
# zig's sys/mman.h is an #error without -D_WASI_EMULATED_MMAN: pymalloc's arenas use malloc.
ac_cv_func_mmap=no
"""
#: ``Modules/getaddrinfo.c`` (used: there is no getaddrinfo) needs SOCK_RAW, which zig's
#: headers hide; passed to make for the ``_socket`` module only.
MAKE_VARS: Final[tuple[str, ...]] = ("MODULE__SOCKET_CFLAGS=-DSOCK_RAW=3",)
#: Fixed build timestamp (``__DATE__``/``__TIME__`` in ``sys.version``): 2025-06-05.
SOURCE_DATE_EPOCH: Final = "1749081600"

#: Linked into the interpreter (through configure's ``LIBS``).
_SHIM_C: Final = r"""
/* netdb functions that zig's wasi-libc declares but does not define. WASI preview 1 has no
   name resolution, so every lookup fails. */
#include <netdb.h>
#include <pthread.h>
#include <stddef.h>

static int shim_h_errno;

int *__h_errno_location(void) { return &shim_h_errno; }

struct hostent *gethostbyname(const char *name) {
    (void)name;
    shim_h_errno = HOST_NOT_FOUND;
    return NULL;
}

struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type) {
    (void)addr; (void)len; (void)type;
    shim_h_errno = HOST_NOT_FOUND;
    return NULL;
}

struct servent *getservbyname(const char *name, const char *proto) {
    (void)name; (void)proto;
    return NULL;
}

struct servent *getservbyport(int port, const char *proto) {
    (void)port; (void)proto;
    return NULL;
}

struct protoent *getprotobyname(const char *name) {
    (void)name;
    return NULL;
}

const char *hstrerror(int err) {
    (void)err;
    return "Unknown host";
}

/* zig's wasi-libc never links the main thread into its own thread list (musl's __init_tp
   does td->next = td->prev = td; the WASI port skips it), so pthread_key_delete, which walks
   that circular list, loops forever on the NULL `next` (CPython calls it in Py_FinalizeEx).
   Close the list before main. Layout of musl's struct pthread on WASI: self, prev, next. */
struct shim_pthread_head {
    void *self;
    void *prev;
    void *next;
};

__attribute__((constructor)) static void shim_close_thread_list(void) {
    struct shim_pthread_head *t = (struct shim_pthread_head *)pthread_self();
    if (t->next == NULL) {
        t->prev = t;
        t->next = t;
    }
}
"""

# Run by the *native 3.13* build interpreter (its bytecode is what the wasm interpreter
# reads): the one stdlib module that cannot be frozen (its name, _sysconfigdata__wasi_wasm32-
# wasi, is not an identifier) as a sourceless .pyc in a deterministic, stored zip.
_ZIP_SCRIPT: Final = r"""
import importlib._bootstrap_external as be, os, sys, zipfile
sysconfig_dir, out, guest_lib = sys.argv[1:4]
entries = {}
for name in sorted(os.listdir(sysconfig_dir)):
    if name.startswith("_sysconfigdata_") and name.endswith(".py"):
        with open(os.path.join(sysconfig_dir, name), "rb") as f:
            code = compile(f.read(), guest_lib + "/" + name, "exec", dont_inherit=True)
        entries[name[:-3] + ".pyc"] = bytes(be._code_to_timestamp_pyc(code, 0, 0))
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
    for rel in sorted(entries):
        info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        z.writestr(info, entries[rel])
print(len(entries), "modules")
"""


class BuildError(RuntimeError):
    """A build step failed; the message names the step and its log file."""


def _run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``cmd`` with output to ``log``; BuildError with the log's tail if it fails."""
    print(f"[cpython_build] {' '.join(map(str, cmd))}  (log: {log})", flush=True)
    with log.open("ab") as out:
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=cwd, env=dict(env) if env is not None else None,
            stdout=out, stderr=subprocess.STDOUT, check=False,
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BuildError(f"{cmd[0]} failed with exit code {proc.returncode}; end of {log}:\n{tail}")


def fetch_sources(work: Path, local: Path | None) -> tuple[Path, Path]:
    """The verified CPython and zlib tarballs (CPython from ``local`` if given)."""
    apt = work / "apt"
    tarball = local if local is not None else apt / ORIG_TARBALL
    zlib = apt / ZLIB_TARBALL
    wanted = [
        (DEBIAN_SOURCE_PACKAGE, DEBIAN_VERSION, tarball),
        (ZLIB_SOURCE_PACKAGE, ZLIB_DEBIAN_VERSION, zlib),
    ]
    missing = [(pkg, ver) for pkg, ver, path in wanted if not path.exists()]
    if missing:
        _apt_download(apt, missing)
    for path, pinned in ((tarball, ORIG_SHA256), (zlib, ZLIB_SHA256)):
        digest = sha256_file(path)
        if digest != pinned:
            raise BuildError(f"{path} has SHA-256 {digest}, expected the pinned {pinned}")
    return tarball, zlib


def _apt_download(apt: Path, packages: Sequence[tuple[str, str]]) -> None:
    """``apt-get source --download-only`` with a private deb-src list (system apt untouched)."""
    for sub in ("lists/partial", "cache/archives/partial", "etc"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    sources = apt / "etc" / "sources.list"
    sources.write_text(f"deb-src {DEBIAN_MIRROR} {DEBIAN_SUITE} main\n")
    opts = [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "Debug::NoLocking=1",
    ]
    log = apt / "apt.log"
    _run(["apt-get", *opts, "update"], cwd=apt, log=log)
    for package, version in packages:
        try:
            _run(["apt-get", *opts, "source", "--download-only", f"{package}={version}"],
                 cwd=apt, log=log)
        except BuildError:
            # A newer Debian revision of the same upstream release carries the same orig
            # tarball; its hash is checked by the caller either way.
            _run(["apt-get", *opts, "source", "--download-only", package], cwd=apt, log=log)


def freeze_specs(lib: Path) -> list[str]:
    """``freeze_modules.py`` specs for every stdlib module not frozen by CPython already."""
    specs: list[str] = []
    for entry in sorted(lib.iterdir(), key=lambda p: p.name):
        base = entry.name.removesuffix(".py")
        if base in _ALREADY_FROZEN or base in FREEZE_EXCLUDE:
            continue
        if entry.is_dir() and (entry / "__init__.py").is_file():
            specs.append(f"<{base}.**.*>")
        elif entry.is_file() and entry.name.endswith(".py"):
            specs.append(base)
    return specs


def extract(tarball: Path, work: Path) -> Path:
    """Unpack a fresh source tree and freeze the whole (non-excluded) stdlib into it."""
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(src, filter="data")
    tree = src / SOURCE_DIR_NAME
    (tree / "Lib" / "sitecustomize.py").write_text(_SITECUSTOMIZE_PY)
    freeze = tree / "Tools" / "build" / "freeze_modules.py"
    text = freeze.read_text()
    if text.count(_FREEZE_LINE_OFF) != 1 or text.count(_FREEZE_ANCHOR) != 1:
        raise BuildError(f"{freeze} does not have the lines this build edits")
    text = text.replace(_FREEZE_LINE_OFF, _FREEZE_LINE_ON)
    # Appended last: freeze_modules.py asserts on a plain spec whose module an earlier
    # section already froze, so CPython's own sections must come first.
    section = "    ('warden: the rest of the stdlib', [\n" + "".join(
        f"        '{spec}',\n" for spec in freeze_specs(tree / "Lib")
    ) + "        ]),\n"
    freeze.write_text(text.replace(_FREEZE_ANCHOR, section + _FREEZE_ANCHOR))
    # Regenerates Python/frozen.c and Makefile.pre.in (any Python >= 3.10 can run it).
    _run([sys.executable, freeze, "--frozen-modules"], cwd=tree, log=work / "regen-frozen.log")
    return tree


def build_native(tree: Path, work: Path, jobs: int) -> Path:
    """The build interpreter (same sources, gcc); returns its ``python`` binary."""
    build = work / "native"
    build.mkdir(parents=True, exist_ok=True)
    log = work / "native.log"
    configure = os.path.relpath(tree / "configure", build)
    _run([configure, f"--prefix={work / 'native-prefix'}"], cwd=build, log=log)
    _run(["make", f"-j{jobs}", "all"], cwd=build, log=log)
    python = build / "python"
    if not python.is_file():
        raise BuildError(f"native build produced no {python}")
    return python


def write_wrappers(bin_dir: Path) -> dict[str, str]:
    """zig cc/ar/ranlib wrappers standing in for wasi-sdk; returns CC/CPP/AR/RANLIB."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    zig = f'"{sys.executable}" -m ziglang'
    drop = "".join(f"    {flag}) ;;\n" for flag in DROPPED_LINK_FLAGS)
    scripts = {
        "zcc": (
            "#!/bin/bash\nargs=()\nfor a in \"$@\"; do\n  case \"$a\" in\n"
            f"{drop}    *) args+=(\"$a\") ;;\n  esac\ndone\n"
            f"exec {zig} cc -target wasm32-wasi -fno-sanitize=undefined -Wno-date-time "
            "\"${args[@]}\"\n"
        ),
        "zar": f"#!/bin/sh\nexec {zig} ar \"$@\"\n",
        "zranlib": f"#!/bin/sh\nexec {zig} ranlib \"$@\"\n",
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    cc = str(bin_dir / "zcc")
    return {"CC": cc, "CPP": f"{cc} -E", "AR": str(bin_dir / "zar"),
            "RANLIB": str(bin_dir / "zranlib")}


def zig_env(work: Path) -> dict[str, str]:
    """The environment for zig: a private cache.

    zig cc's object cache is keyed on the command line, and CPython's command lines are the
    same in two build directories (relative ``-I.``): with a shared cache, a second build
    with a different ``pyconfig.h`` got the first build's objects back (observed: a
    ``--with-pymalloc`` build came out byte-identical to the build without it).
    """
    cache = str(work / "zig-cache")
    return {**os.environ, "ZIG_GLOBAL_CACHE_DIR": cache, "ZIG_LOCAL_CACHE_DIR": cache}


def build_shim(work: Path, tools: Mapping[str, str]) -> Path:
    """The libc shim (netdb stubs, thread-list fix) as a static library."""
    shim = work / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    source = shim / "warden_wasi_shim.c"
    source.write_text(_SHIM_C)
    obj, lib = shim / "warden_wasi_shim.o", shim / "libwarden_wasi_shim.a"
    lib.unlink(missing_ok=True)
    log, env = work / "shim.log", zig_env(work)
    _run([tools["CC"], "-O2", "-Wall", "-c", source, "-o", obj], cwd=shim, log=log, env=env)
    _run([tools["AR"], "rcs", lib, obj], cwd=shim, log=log, env=env)
    return lib


def build_zlib(tarball: Path, work: Path, tools: Mapping[str, str]) -> tuple[Path, Path]:
    """zlib for wasm32-wasi with the same compiler; returns (include dir, libz.a)."""
    root = work / "zlib"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="data")
    src = root / ZLIB_DIR_NAME
    objs = []
    log, env = work / "zlib.log", zig_env(work)
    for name in ZLIB_SOURCES:
        obj = src / f"{name}.o"
        _run([tools["CC"], *ZLIB_CFLAGS, "-c", src / f"{name}.c", "-o", obj],
             cwd=src, log=log, env=env)
        objs.append(obj)
    lib = src / "libz.a"
    _run([tools["AR"], "rcs", lib, *objs], cwd=src, log=log, env=env)
    return src, lib


def build_host(
    tree: Path, work: Path, build_python: Path, jobs: int, zlib_tarball: Path
) -> Path:
    """Cross-build the interpreter for wasm32-wasip1; returns ``python.wasm``."""
    build = work / "wasi"
    build.mkdir(parents=True, exist_ok=True)
    log = work / "wasi.log"
    tools = write_wrappers(work / "bin")
    zlib_include, zlib_lib = build_zlib(zlib_tarball, work, tools)
    config_site = work / "config.site-wasm32-wasi-zig"
    config_site.write_text(
        f". {tree / 'Tools' / 'wasm' / 'config.site-wasm32-wasi'}\n{_CONFIG_SITE_EXTRA}"
    )
    env = {
        **zig_env(work),
        **tools,
        "CONFIG_SITE": str(config_site),
        "PKG_CONFIG_PATH": "",
        "PKG_CONFIG_LIBDIR": str(work / "no-pkgconfig"),  # keep host libraries out
        "OPT": OPT_FLAGS,
        "LDFLAGS": HOST_LDFLAGS,
        "LIBS": str(build_shim(work, tools)),
        # Read by configure's PKG_CHECK_MODULES([ZLIB]) instead of asking pkg-config.
        "ZLIB_CFLAGS": f"-I{zlib_include}",
        "ZLIB_LIBS": str(zlib_lib),
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
    }
    configure = os.path.relpath(tree / "configure", build)
    build_triple = subprocess.run(
        [str(tree / "config.guess")], capture_output=True, text=True, check=True
    ).stdout.strip()
    _run(
        [configure, f"--host={HOST_TRIPLE}", f"--build={build_triple}",
         f"--with-build-python={build_python}", *CONFIGURE_ARGS],
        cwd=build, log=log, env=env,
    )
    _run(["make", f"-j{jobs}", "all", *MAKE_VARS], cwd=build, log=log, env=env)
    wasm = build / WASM_NAME
    if not wasm.is_file():
        raise BuildError(f"host build produced no {wasm}")
    return wasm


def build_stdlib_zip(work: Path, build_python: Path, out: Path) -> None:
    """The optional zip with ``_sysconfigdata`` (everything else is frozen in)."""
    sysconfig_dirs = sorted((work / "wasi" / "build").glob("lib.wasi-wasm32-*"))
    if len(sysconfig_dirs) != 1:
        raise BuildError(f"expected one lib.wasi-wasm32-* directory, found {sysconfig_dirs}")
    guest_lib = f"/usr/local/lib/python{CPYTHON_VERSION.rsplit('.', 1)[0]}"
    _run(
        [build_python, "-I", "-c", _ZIP_SCRIPT, sysconfig_dirs[0], out, guest_lib],
        cwd=work, log=work / "stdlib-zip.log",
    )


def check_tools() -> None:
    """The native toolchain and the pinned zig must be present."""
    missing = [tool for tool in ("gcc", "make", "xz") if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"missing build tools: {', '.join(missing)} (apt-get install them)")
    try:
        zig_version = metadata.version("ziglang")
    except metadata.PackageNotFoundError:
        raise BuildError(
            f"PyPI ziglang is not installed: pip install ziglang=={ZIGLANG_VERSION}"
        ) from None
    if zig_version != ZIGLANG_VERSION:
        raise BuildError(f"ziglang {zig_version} is installed; this build pins {ZIGLANG_VERSION}")


def build(out_dir: Path, work: Path, jobs: int, source: Path | None) -> dict[str, object]:
    """Run every step; returns the build record also written to BUILD-INFO.json."""
    check_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def step(name: str, start: float) -> None:
        timings[name] = round(time.monotonic() - start, 1)
        print(f"[cpython_build] {name}: {timings[name]} s", flush=True)

    t = time.monotonic()
    tarball, zlib_tarball = fetch_sources(work, source)
    tree = extract(tarball, work)
    step("source", t)
    t = time.monotonic()
    build_python = build_native(tree, work, jobs)
    step("native_build", t)
    t = time.monotonic()
    wasm = build_host(tree, work, build_python, jobs, zlib_tarball)
    step("wasi_build", t)
    t = time.monotonic()
    zip_out = out_dir / STDLIB_ZIP_NAME
    build_stdlib_zip(work, build_python, zip_out)
    step("stdlib_zip", t)
    wasm_out = out_dir / WASM_NAME
    shutil.copyfile(wasm, wasm_out)
    info: dict[str, object] = {
        "cpython": CPYTHON_VERSION,
        "source": {"debian_package": f"{DEBIAN_SOURCE_PACKAGE}={DEBIAN_VERSION}",
                   "suite": DEBIAN_SUITE, "file": ORIG_TARBALL, "sha256": ORIG_SHA256},
        "zlib": {"debian_package": f"{ZLIB_SOURCE_PACKAGE}={ZLIB_DEBIAN_VERSION}",
                 "file": ZLIB_TARBALL, "sha256": ZLIB_SHA256},
        "compiler": f"ziglang {ZIGLANG_VERSION} (zig cc -target wasm32-wasi)",
        "opt": OPT_FLAGS,
        "configure": [f"--host={HOST_TRIPLE}", *CONFIGURE_ARGS],
        "frozen": "whole stdlib except " + ", ".join(sorted(FREEZE_EXCLUDE)),
        "sitecustomize": _SITECUSTOMIZE_PY,
        "build_machine": platform.platform(),
        "jobs": jobs,
        "timings_s": timings,
        "files": {
            path.name: {"size": path.stat().st_size, "sha256": sha256_file(path)}
            for path in (wasm_out, zip_out)
        },
        "run": {"argv": ["python", "-s", "/app/main.py"], "env": {"PYTHONHOME": "/usr/local"},
                "optional_files": {STDLIB_GUEST_PATH.lstrip("/"): STDLIB_ZIP_NAME}},
    }
    (out_dir / "BUILD-INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("out_dir", type=Path, help="where python.wasm and python313.zip go")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch directory (default: OUT_DIR/../cpython-build-work)")
    parser.add_argument("--jobs", type=int, default=2, help="make -j (default 2)")
    parser.add_argument("--source", type=Path, default=None,
                        help=f"a local {ORIG_TARBALL} instead of apt-get source")
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir.resolve()
    work: Path = (args.work or out_dir.parent / "cpython-build-work").resolve()
    try:
        info = build(out_dir, work, args.jobs, args.source)
    except BuildError as exc:
        print(f"[cpython_build] FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info["files"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
