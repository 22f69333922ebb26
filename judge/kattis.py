"""Kattis problem packages (legacy, 2023-07-draft, 2025-09) read into Warden's problem model.

A package is trusted to describe its problem, not to be runnable here as is: whatever Warden
cannot honour exactly (multi-pass, custom graders, a validator that needs several files, limits
beyond Warden's) is refused with a :class:`PackageError` naming the part of the package, so the
author knows what to change. What only describes the problem (authors, license, statements,
input validators) is accepted; unknown keys are warnings, as verifyproblem makes them.
Example submissions in languages Warden lacks are listed as skipped, not refused.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import ValidationError

from judge.problem import (
    MAX_CHECKER_ARGS,
    MAX_DEPTH,
    MAX_TESTS,
    MAX_TIME_LIMIT_S,
    NAME_PATTERN,
    PROBLEM_ID_PATTERN,
    Checker,
    CheckerKind,
    Problem,
    ProblemLimits,
    ProblemType,
    Program,
    ProgramLimits,
    TestCase,
    TestGroup,
)
from sandboxes.schema import GiB, MiB

FormatVersion = Literal["legacy", "2023-07-draft", "2025-09"]
_VERSIONS: Final[dict[str, FormatVersion]] = {
    "legacy": "legacy", "legacy-icpc": "legacy", "2023-07-draft": "2023-07-draft",
    "2023-07": "2023-07-draft",
    "2025-09": "2025-09"}
CATEGORIES: Final = ("accepted", "wrong_answer", "time_limit_exceeded", "run_time_error",
                     "partially_accepted", "rejected", "brute_force")
# Source file endings per Warden language id (problemtools' languages.yaml, for what we run).
EXTENSIONS: Final[dict[str, str]] = {
    ".c": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".C": "cpp",
    ".py": "python", ".py3": "python", ".js": "javascript", ".rb": "ruby", ".go": "go",
    ".rs": "rust", ".zig": "zig"}
_HEADERS: Final = frozenset({".h", ".hh", ".hpp", ".hxx", ".h++"})
_DOCS: Final = frozenset({".md", ".txt", ".pdf", ".yaml", ".yml", ".json"})
_BUILD_FILES: Final = frozenset({"build", "run", "Makefile", "makefile", "CMakeLists.txt"})
MAX_TEST_FILE_BYTES: Final = 64 * MiB
MAX_DATA_BYTES: Final = 1 * GiB
MAX_INCLUDE_DEPTH: Final = 3
# problemtools' system default (config/problem.yaml): what Kattis judged the package with.
DEFAULT_MEMORY_MIB: Final = 1024
PLACEHOLDER_TIME_LIMIT_S: Final = 1.0  # until verification derives it from the accepted runs
_MAX_PROBLEM_MEMORY_MIB: Final = 4096
_MAX_PROBLEM_OUTPUT_MIB: Final = 64
_MAX_VALIDATION_TIME_S: Final = 120.0

_NAME = re.compile(NAME_PATTERN)
_PROBLEM_ID = re.compile(PROBLEM_ID_PATTERN)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"[^\n]*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[^\n]*$", re.MULTILINE)
_PYTHON2 = re.compile(r"^#!.*python2\b")
_CONSTANT = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z0-9_]+))?\}\}")
_PROBLEM_NAME_TEX = re.compile(r"\\problemname\{([^}]*)\}")

_LEGACY_KEYS: Final = frozenset({
    "problem_format_version", "type", "name", "uuid", "author", "source", "source_url",
    "license", "rights_owner", "limits", "validation", "validator_flags", "grading",
    "keywords"})
_NEW_KEYS: Final = frozenset({
    "problem_format_version", "type", "name", "uuid", "version", "credits", "source",
    "license", "rights_owner", "embargo_until", "limits", "keywords", "languages",
    "allow_file_writing", "constants"})
_LEGACY_LIMITS: Final = frozenset({
    "time_multiplier", "time_safety_margin", "time_limit", "memory", "output", "code",
    "compilation_time", "compilation_memory", "validation_time", "validation_memory",
    "validation_output"})
_NEW_LIMITS: Final = frozenset({
    "time_multipliers", "time_limit", "time_resolution", "memory", "output", "code",
    "compilation_time", "compilation_memory", "validation_time", "validation_memory",
    "validation_output", "validation_passes"})
_TESTDATA_DEFAULTS: Final[dict[str, Any]] = {
    "on_reject": "break", "grading": "default", "grader_flags": "", "accept_score": 1.0,
    "reject_score": 0.0, "range": "-inf +inf", "input_validator_flags": "",
    "output_validator_flags": ""}
_TEST_GROUP_KEYS: Final = frozenset({
    "max_score", "score_aggregation", "static_validation_score", "require_pass", "args",
    "input_validator_args", "static_validator_args", "output_validator_args",
    "input_visualizer_args", "output_visualizer_args", "full_feedback"})
_CASE_KEYS: Final = frozenset({
    "args", "input_validator_args", "output_validator_args", "input_visualizer_args",
    "output_visualizer_args", "full_feedback", "hint", "description"})


class PackageError(Exception):
    """A package Warden cannot honour; ``part`` names where (a key, a file, a directory)."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        self.message = message


@dataclass
class KattisSubmission:
    path: str  # relative to the package, e.g. "submissions/accepted/sol.c"
    category: str  # the directory under submissions/: what verdict it expects
    language: str  # a Warden language id
    source: str


@dataclass
class KattisPackage:
    short_name: str
    format_version: FormatVersion
    problem: Problem
    blobs: dict[str, bytes]  # sha256 hex -> bytes: every test file the problem refers to
    submissions: list[KattisSubmission]
    skipped: list[str]  # example submissions not loaded, each with the reason
    time_limit_fixed: bool  # False: problem.limits.time_limit_s is a placeholder
    time_multiplier: float  # legacy time_multiplier / 2025-09 ac_to_time_limit
    safety_margin: float  # legacy time_safety_margin / 2025-09 time_limit_to_tle
    warnings: list[str]
    time_resolution: float = 1.0  # the time limit is a multiple of this (2023-07+)


@dataclass
class _Case:
    name: str
    rel: str  # "data/secret/01", for messages
    input_sha256: str
    answer_sha256: str
    yaml: dict[str, Any] | None  # 2025-09's per-case <name>.yaml


@dataclass
class _Dir:
    name: str
    rel: str  # "data/secret/group1"
    children: list[_Case | _Dir]
    config: dict[str, Any] | None  # its testdata.yaml / test_group.yaml, if any

    def count(self) -> int:
        return sum(c.count() if isinstance(c, _Dir) else 1 for c in self.children)


@dataclass
class _Flags:
    """Output validator arguments seen per test (Warden has one checker for all of them)."""

    seen: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)

    def add(self, flags: list[str], case: str, origin: str) -> None:
        key = tuple(flags)
        if key not in self.seen and self.seen:
            other, (first, _) = next(iter(self.seen.items()))
            raise PackageError(case, f"output validator arguments {list(key)} differ from "
                               f"{list(other)} ({first}): Warden runs one checker with the "
                               "same arguments for every test")
        self.seen.setdefault(key, (case, origin))


@dataclass
class _Meta:
    title: str
    scoring: bool
    interactive: bool
    custom_validation: bool | None  # None: decided by whether a validator directory exists
    validator_flags: list[str]
    limits: ProblemLimits
    validation_limits: ProgramLimits
    time_limit_fixed: bool
    time_multiplier: float
    safety_margin: float
    time_resolution: float
    grading_overrides: dict[str, tuple[Any, str]]


def load_package(path: Path) -> KattisPackage:
    """Read the Kattis package in directory ``path``; raises :class:`PackageError`."""
    return _Loader(path).load()


class _Loader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.warnings: list[str] = []
        self.blobs: dict[str, bytes] = {}
        self.data_bytes = 0
        self.version: FormatVersion = "legacy"
        self.interactive = False
        self.constants: dict[str, dict[str, str]] = {}
        self.secret_bounded = True

    def warn(self, part: str, message: str) -> None:
        self.warnings.append(f"{part}: {message}")

    def load(self) -> KattisPackage:
        if not self.root.is_dir():
            raise PackageError(str(self.root), "is not a directory (unpack the package first)")
        short_name = self._short_name()
        self._refuse_links()
        meta = self._metadata()
        self._refuse_unsupported_dirs()
        program = self._validator(meta)
        flags = _Flags()
        tests = self._tests(meta, flags)
        checker, interactor = self._checker(meta, program, flags)
        try:
            problem = Problem(
                title=meta.title, type=ProblemType.SCORING if meta.scoring else
                ProblemType.PASS_FAIL, limits=meta.limits, checker=checker,
                interactor=interactor, interactor_limits=meta.validation_limits, tests=tests)
        except ValidationError as e:
            raise PackageError("problem", _pydantic_message(e)) from e
        blobs = {sha: self.blobs[sha] for sha in sorted(problem.blobs())}
        submissions, skipped = self._submissions()
        return KattisPackage(
            short_name=short_name, format_version=self.version, problem=problem, blobs=blobs,
            submissions=submissions, skipped=skipped, time_limit_fixed=meta.time_limit_fixed,
            time_multiplier=meta.time_multiplier, safety_margin=meta.safety_margin,
            warnings=self.warnings, time_resolution=meta.time_resolution)

    def _short_name(self) -> str:
        name = self.root.resolve().name
        short = name.lower()
        if not _PROBLEM_ID.fullmatch(short):
            raise PackageError(f"{name}/", f"the directory name is the problem's short name "
                               f"and must match {PROBLEM_ID_PATTERN} (Kattis: [a-z0-9]+)")
        if not re.fullmatch(r"[a-z0-9]+", name):
            self.warn(f"{name}/", f"short name used as {short!r}; Kattis wants [a-z0-9]+")
        return short

    def _refuse_links(self) -> None:
        """Links within the package are fine (subtasks often share tests that way); one
        that leads out of it could read the host's files."""
        root = self.root.resolve()
        for top, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = Path(top) / name
                if path.is_symlink() and not path.resolve().is_relative_to(root):
                    raise PackageError(path.relative_to(self.root).as_posix(),
                                       "a symbolic link out of the package")

    # -- problem.yaml -------------------------------------------------------------------

    def _yaml(self, rel: str, *, substitute: bool = False) -> dict[str, Any]:
        try:
            text = (self.root / rel).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PackageError(rel, "missing") from None
        except (OSError, UnicodeDecodeError) as e:
            raise PackageError(rel, f"cannot be read as UTF-8 text ({e})") from None
        if substitute:
            text = self._substitute(text)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise PackageError(rel, f"is not valid YAML ({e})") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise PackageError(rel, "must be a YAML map")
        return {str(k): v for k, v in data.items()}

    def _metadata(self) -> _Meta:
        data = self._yaml("problem.yaml")
        raw_version = str(data.get("problem_format_version", "legacy"))
        if raw_version not in _VERSIONS:
            raise PackageError("problem.yaml: problem_format_version", f"{raw_version!r} is "
                               "not a version Warden reads (legacy, 2023-07-draft, 2025-09)")
        self.version = _VERSIONS[raw_version]
        legacy = self.version == "legacy"
        known = _LEGACY_KEYS if legacy else _NEW_KEYS
        for key in data:
            if key not in known and key not in ("validation", "validator_flags"):
                self.warn(f"problem.yaml: {key}", f"not a {self.version} key; ignored")
        if not legacy:
            self.constants = _constants(data.get("constants"))
            for key in ("validation", "validator_flags"):
                if key in data:
                    self.warn(f"problem.yaml: {key}", "a legacy key (removed in 2023-07); "
                              "honoured")
            self._new_metadata_warnings(data)
        types = _types(data.get("type", "pass-fail"))
        custom: bool | None = None
        if "validation" in data:
            words = str(data["validation"]).split()
            if not words or words[0] not in ("default", "custom") or (
                    words[0] == "default" and len(words) > 1) or any(
                    w not in ("score", "interactive") for w in words[1:]):
                raise PackageError("problem.yaml: validation", f"{data['validation']!r}: "
                                   "expected default, or custom [score] [interactive]")
            custom = words[0] == "custom"
            if "interactive" in words:
                types.add("interactive")
        elif legacy:
            custom = False
        self.interactive = "interactive" in types
        flags = data.get("validator_flags", "")
        if not isinstance(flags, str):
            raise PackageError("problem.yaml: validator_flags", "must be a string")
        limits = data.get("limits", {})
        if not isinstance(limits, dict):
            raise PackageError("problem.yaml: limits", "must be a map")
        return self._limits({str(k): v for k, v in limits.items()}, _Meta(
            title=self._title(data.get("name")), scoring="scoring" in types,
            interactive=self.interactive, custom_validation=custom, validator_flags=flags.split(),
            limits=ProblemLimits(), validation_limits=ProgramLimits(), time_limit_fixed=False,
            time_multiplier=5.0, safety_margin=2.0, time_resolution=1.0,
            grading_overrides=self._legacy_grading(data.get("grading")) if legacy else {}))

    def _new_metadata_warnings(self, data: dict[str, Any]) -> None:
        languages = data.get("languages", "all")
        if languages != "all":
            self.warn("problem.yaml: languages", f"{languages!r}: Warden does not restrict a "
                      "problem's languages; ignored")
        if data.get("allow_file_writing") is True:
            self.warn("problem.yaml: allow_file_writing", "submissions get Warden's sandbox "
                      "(a scratch directory), not the problem's working directory")

    def _title(self, name: Any) -> str:
        if isinstance(name, dict) and name:
            name = name.get("en", next(iter(name.values())))
        if name is None and self.version == "legacy":
            name = self._statement_name()
        if name is None:
            self.warn("problem.yaml: name", "missing; the short name is the title")
            return self.root.resolve().name
        return str(name).strip()[:256]

    def _statement_name(self) -> str | None:
        for rel in ("problem_statement/problem.en.tex", "problem_statement/problem.tex"):
            path = self.root / rel
            if path.is_file():
                found = _PROBLEM_NAME_TEX.search(path.read_text(encoding="utf-8", errors="replace"))
                if found:
                    return found.group(1)
        return None

    def _legacy_grading(self, grading: Any) -> dict[str, tuple[Any, str]]:
        """problem.yaml's deprecated ``grading`` keys that problemtools applies to every
        test data group (accept_score, reject_score, on_reject)."""
        if grading is None:
            return {}
        if not isinstance(grading, dict):
            raise PackageError("problem.yaml: grading", "must be a map")
        overrides: dict[str, tuple[Any, str]] = {}
        for key, value in grading.items():
            part = f"problem.yaml: grading.{key}"
            if key in ("accept_score", "reject_score"):
                overrides[key] = (value, part)
            elif key == "on_reject" and value in ("first_error", "grade"):
                overrides[key] = ("break" if value == "first_error" else "continue", part)
            elif key == "objective" and value == "min":
                self.warn(part, "Warden ranks higher scores better; ignored")
            elif key == "range" or key not in ("objective", "show_test_data_groups"):
                self.warn(part, f"{value!r} ignored")
        return overrides

    def _limits(self, limits: dict[str, Any], meta: _Meta) -> _Meta:
        legacy = self.version == "legacy"
        for key in limits:
            if key not in (_LEGACY_LIMITS if legacy else _NEW_LIMITS):
                self.warn(f"problem.yaml: limits.{key}", f"not a {self.version} limit; ignored")
        part = "problem.yaml: limits."
        if legacy:
            meta.time_multiplier = _number(limits.get("time_multiplier", 5.0),
                                           part + "time_multiplier", minimum=1.0)
            meta.safety_margin = _number(limits.get("time_safety_margin", 2.0),
                                         part + "time_safety_margin", minimum=1.0)
        else:
            multipliers = limits.get("time_multipliers", {})
            if not isinstance(multipliers, dict) or set(multipliers) - {
                    "ac_to_time_limit", "time_limit_to_tle"}:
                raise PackageError(part + "time_multipliers",
                                   "must be a map of ac_to_time_limit and time_limit_to_tle")
            meta.time_multiplier = _number(multipliers.get("ac_to_time_limit", 2.0),
                                           part + "time_multipliers", minimum=1.0)
            meta.safety_margin = _number(multipliers.get("time_limit_to_tle", 1.5),
                                         part + "time_multipliers", minimum=1.0)
            meta.time_resolution = _number(limits.get("time_resolution", 1.0),
                                           part + "time_resolution", minimum=1e-3)
        time_limit = self._time_limit(limits.get("time_limit"), meta.time_resolution)
        meta.time_limit_fixed = time_limit is not None
        memory = _mib(limits.get("memory", DEFAULT_MEMORY_MIB), part + "memory",
                      _MAX_PROBLEM_MEMORY_MIB)
        output = _mib(limits.get("output", 8), part + "output", _MAX_PROBLEM_OUTPUT_MIB,
                      minimum=0)
        meta.limits = ProblemLimits(time_limit_s=time_limit or PLACEHOLDER_TIME_LIMIT_S,
                                    memory_bytes=memory, output_bytes=output)
        program: dict[str, Any] = {}
        if "validation_time" in limits:
            program["wall_time_s"] = _number(limits["validation_time"],
                                             part + "validation_time", minimum=1e-3,
                                             maximum=_MAX_VALIDATION_TIME_S)
        if "validation_memory" in limits:
            program["memory_bytes"] = _mib(limits["validation_memory"],
                                           part + "validation_memory", 4096)
        if "validation_output" in limits:
            program["output_bytes"] = _mib(limits["validation_output"],
                                           part + "validation_output", 64, minimum=0)
        meta.validation_limits = ProgramLimits(**program)
        for key in ("code", "compilation_time", "compilation_memory"):
            if key in limits:
                self.warn(part + key, "Warden's own compile and source limits apply")
        return meta

    def _time_limit(self, given: Any, resolution: float) -> float | None:
        part = "problem.yaml: limits.time_limit"
        limit = None if given is None else _number(given, part, minimum=1e-3,
                                                   maximum=MAX_TIME_LIMIT_S)
        file = self.root / ".timelimit"
        if file.is_file():
            text = file.read_text(encoding="utf-8", errors="replace").strip()
            from_file = _number(text, ".timelimit", minimum=1e-3,
                                maximum=MAX_TIME_LIMIT_S)
            if limit is not None and limit != from_file:
                raise PackageError(".timelimit", f"{from_file} s conflicts with "
                                   f"limits.time_limit {limit} s in problem.yaml")
            limit = from_file
        if limit is not None and not math.isclose(limit / resolution,
                                                  round(limit / resolution)):
            self.warn(part, f"{limit} s is not a multiple of time_resolution {resolution} s")
        return limit

    def _substitute(self, text: str) -> str:
        """2023-07+ constants: ``{{name}}`` / ``{{name.variant}}`` in programs and
        test_group.yaml (undefined ones stay as they are, as the spec says)."""
        if not self.constants:
            return text

        def value(m: re.Match[str]) -> str:
            variants = self.constants.get(m.group(1))
            if variants is None:
                return m.group(0)
            return variants.get(m.group(2) or "value", m.group(0))
        return _CONSTANT.sub(value, text)

    # -- directories Warden refuses -----------------------------------------------------

    def _refuse_unsupported_dirs(self) -> None:
        if (self.root / "include").is_dir():
            raise PackageError("include/", "included files are not supported: Warden "
                               "compiles a submission as its one source file")
        if (self.root / "static_validator").exists():
            raise PackageError("static_validator/", "static validators are not supported")
        if (self.root / "graders").is_dir():
            self.warn("graders/", "custom graders are not supported; only used with "
                      "testdata.yaml `grading: custom`, which Warden refuses")

    # -- output validator / interactor --------------------------------------------------

    def _validator(self, meta: _Meta) -> Program | None:
        found = [d for d in ("output_validators", "output_validator") if (self.root / d).is_dir()]
        if len(found) > 1:
            raise PackageError("output_validators/", "both output_validators/ and "
                               "output_validator/ exist; keep one")
        if not found:
            if meta.custom_validation or meta.interactive:
                what = "an interactive problem's interactor" if meta.interactive else \
                    "`validation: custom` needs the output validator"
                name = "output_validators/" if self.version == "legacy" else "output_validator/"
                raise PackageError(name, f"missing: {what} goes here")
            return None
        rel = found[0] + "/"
        if meta.custom_validation is False and not meta.interactive:
            self.warn(rel, "ignored: problem.yaml says `validation: default`")
            return None
        entries = _visible(self.root / found[0])
        dirs = [e for e in entries if e.is_dir()]
        if found[0] == "output_validators" and len(entries) > 1 and dirs:
            raise PackageError(rel, f"{len(entries)} validators "
                               f"({', '.join(e.name for e in entries)}): Warden runs one")
        if len(entries) == 1 and dirs:
            rel, files = f"{rel}{dirs[0].name}/", _visible(dirs[0])
        else:
            files = entries
        try:
            _, language, source = self._program(files)
        except _ProgramError as e:
            raise PackageError(rel, str(e)) from None
        return Program(language=language, source=source)

    def _program(self, files: list[Path]) -> tuple[Path, str, str]:
        """The one source file of a program directory, its quoted headers inlined."""
        if not files:
            raise _ProgramError("empty")
        if nested := [f.name for f in files if f.is_dir()]:
            raise _ProgramError(f"has subdirectories ({', '.join(nested)}): Warden compiles "
                               "one source file")
        if scripts := [f.name for f in files if f.name in _BUILD_FILES]:
            raise _ProgramError(f"has build scripts ({', '.join(scripts)}): Warden compiles "
                               "one source file, with its own compiler")
        sources = [f for f in files if f.suffix not in _HEADERS | _DOCS and f.suffix]
        if len(sources) != 1:
            names = ", ".join(f.name for f in sources) or "none"
            raise _ProgramError(f"{len(sources)} source files ({names}): Warden compiles one "
                               "file (headers it #includes with quotes are inlined)")
        main = sources[0]
        label = f"{main.name}: " if len(files) > 1 else ""
        language = EXTENSIONS.get(main.suffix)
        if language is None:
            raise _ProgramError(f"{label}{main.suffix} files are not a language Warden runs")
        text = _text(main)
        if text is None:
            raise _ProgramError(f"{label}not UTF-8 text")
        if language == "python" and _PYTHON2.match(text):
            raise _ProgramError(f"{label}Python 2 (its #! line); Warden runs Python 3")
        if language in ("c", "cpp"):
            headers = {f.name: f for f in files if f.suffix in _HEADERS}
            text = _inline(text, main.name, headers, set(), 0)
        return main, language, self._substitute(text)

    def _checker(self, meta: _Meta, program: Program | None,
                 flags: _Flags) -> tuple[Checker, Program | None]:
        (args, (_, origin)), = flags.seen.items()
        if meta.interactive:
            if args:
                self.warn(origin, f"interactor flags {list(args)} ignored (Warden passes the "
                          "interactor no extra arguments)")
            return Checker(), program
        if program is not None:
            if len(args) > MAX_CHECKER_ARGS or any(len(a) > 256 for a in args):
                raise PackageError(origin, f"at most {MAX_CHECKER_ARGS} validator arguments "
                                   "of at most 256 characters")
            return Checker(kind=CheckerKind.KATTIS, program=program, args=list(args),
                           limits=meta.validation_limits), None
        return _default_checker(list(args), origin), None

    # -- data/ --------------------------------------------------------------------------

    def _tests(self, meta: _Meta, flags: _Flags) -> TestGroup:
        data = self.root / "data"
        if not data.is_dir():
            raise PackageError("data/", "missing")
        testdata = self.version != "2025-09"  # legacy and 2023-07-draft, as problemtools
        own, other = ("testdata.yaml", "test_group.yaml") if testdata else \
            ("test_group.yaml", "testdata.yaml")
        extra = () if testdata else ("invalid_input", "invalid_output", "valid_output")
        for entry in _visible(data):
            if entry.name not in ("sample", "secret", own, *extra):
                raise PackageError(f"data/{entry.name}", "data/ may hold only sample/ and "
                                   "secret/ (test files belong in them)")
        for wrong in sorted(data.rglob(other)):
            raise PackageError(wrong.relative_to(self.root).as_posix(), f"{self.version} "
                               f"packages configure test data in {own}, not {other}")
        if not (data / "secret").is_dir():
            raise PackageError("data/secret", "missing: a problem needs secret test data")
        groups: list[_Case | _Dir] = []
        for name in ("sample", "secret"):
            if (data / name).is_dir():
                found = self._scan(data / name, f"data/{name}", 2, own)
                if found is not None:
                    groups.append(found)
            elif name == "sample":
                self.warn("data/sample", "missing: no sample test data")
        root = _Dir("root", "data", groups, self._config(data, "data", own))
        if root.count() > MAX_TESTS:
            raise PackageError("data/", f"{root.count()} test cases: Warden takes at most "
                               f"{MAX_TESTS}")
        if testdata:
            return self._legacy_group(root, {}, meta, flags)
        return self._group_2025(root, "root", {}, meta, flags, [])

    def _config(self, path: Path, rel: str, own: str) -> dict[str, Any] | None:
        if not (path / own).is_file():
            return None
        return self._yaml(f"{rel}/{own}", substitute=own == "test_group.yaml")

    def _scan(self, path: Path, rel: str, depth: int, own: str) -> _Dir | None:
        if depth > MAX_DEPTH:
            raise PackageError(rel, f"groups nest at most {MAX_DEPTH} deep (root, "
                               "sample/secret, and two levels below)")
        _check_name(path.name, rel)
        entries = _visible(path)
        files = {e.name: e for e in entries if e.is_file()}
        children: list[_Case | _Dir] = []
        for entry in entries:
            if entry.is_dir():
                if entry.name.endswith(".files"):
                    raise PackageError(f"{rel}/{entry.name}", "input files (.files) are not "
                                       "supported: submissions read standard input only")
                sub = self._scan(entry, f"{rel}/{entry.name}", depth + 1, own)
                if sub is not None:
                    children.append(sub)
            elif entry.name.endswith(".ans") and entry.name[:-4] + ".in" not in files:
                raise PackageError(f"{rel}/{entry.name}", "has no .in file beside it")
            elif entry.name.endswith(".in"):
                children.append(self._case(entry, rel, files))
        if not children:
            if self.interactive and any(n.endswith(".interaction") for n in files):
                self.warn(rel, "only .interaction files (shown in statements, not judged)")
                return None
            raise PackageError(rel, "holds no test cases (an .in with its .ans)")
        children.sort(key=lambda c: c.name)
        return _Dir(path.name, rel, children, self._config(path, rel, own))

    def _case(self, file: Path, rel: str, files: dict[str, Path]) -> _Case:
        stem = file.name[:-3]
        case_rel = f"{rel}/{stem}"
        _check_name(stem, f"{rel}/{file.name}")
        answer = files.get(stem + ".ans")
        if answer is None and not self.interactive:
            raise PackageError(f"{rel}/{file.name}", "has no .ans file beside it")
        config = None
        if self.version == "2025-09" and stem + ".yaml" in files:
            config = self._yaml(f"{rel}/{stem}.yaml")
        return _Case(stem, case_rel, self._blob(file, f"{rel}/{file.name}"),
                     self._blob(answer, f"{rel}/{answer.name}") if answer else
                     self._store(b""), config)

    def _blob(self, path: Path, rel: str) -> str:
        size = path.stat().st_size
        if size > MAX_TEST_FILE_BYTES:
            raise PackageError(rel, f"{size} bytes: a test file may have at most "
                               f"{MAX_TEST_FILE_BYTES // MiB} MiB")
        self.data_bytes += size
        if self.data_bytes > MAX_DATA_BYTES:
            raise PackageError("data/", f"more than {MAX_DATA_BYTES // GiB} GiB of test data")
        return self._store(path.read_bytes())

    def _store(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.blobs[sha] = data
        return sha

    def _legacy_group(self, d: _Dir, parent: dict[str, tuple[Any, str]], meta: _Meta,
                      flags: _Flags) -> TestGroup:
        """testdata.yaml: each key inherited from the parent group unless set here; the
        default grader's flags become the group's verdict mode and aggregation."""
        file = f"{d.rel}/testdata.yaml"
        config = dict(parent)
        for key, value in (d.config or {}).items():
            if key not in _TESTDATA_DEFAULTS:
                self.warn(f"{file}: {key}", "unknown key; ignored")
                continue
            if key in ("accept_score", "reject_score", "range") and not meta.scoring:
                self.warn(f"{file}: {key}", "only for scoring problems; ignored")
                continue
            if key == "range" and str(value).split() != ["-inf", "+inf"]:
                self.warn(f"{file}: range", f"{value!r}: score ranges are not checked")
            config[key] = (value, f"{file}: {key}")
        config.update(meta.grading_overrides)

        def get(key: str) -> tuple[Any, str]:
            return config.get(key, (_TESTDATA_DEFAULTS[key], f"{file}: {key} (default)"))

        grading, part = get("grading")
        if grading == "custom":
            raise PackageError(part, "custom graders are not supported (only the default "
                               "grader and its grader_flags)")
        if grading != "default":
            raise PackageError(part, f"{grading!r}: expected default")
        on_reject, part = get("on_reject")
        if on_reject not in ("break", "continue"):
            raise PackageError(part, f"{on_reject!r}: expected break or continue")
        group = _grader_flags(*get("grader_flags"), group=d.rel, on_reject=on_reject,
                              warn=self.warn)
        if meta.scoring:
            group |= {"accept_score": _number(*get("accept_score")),
                      "reject_score": _number(*get("reject_score"))}
        value, part = get("output_validator_flags")
        case_flags = meta.validator_flags + str(value).split()
        origin = part if str(value).split() or not meta.validator_flags else \
            "problem.yaml: validator_flags"
        children: list[TestCase | TestGroup] = []
        for child in d.children:
            if isinstance(child, _Dir):
                children.append(self._legacy_group(child, config, meta, flags))
            else:
                flags.add(case_flags, child.rel, origin)
                children.append(_test_case(child))
        return TestGroup(name=d.name, children=children, on_reject=on_reject, **group)

    def _group_2025(self, d: _Dir, role: str, inherited: dict[str, Any], meta: _Meta,
                    flags: _Flags, args: list[str]) -> TestGroup:
        """test_group.yaml: scores from max_score and score_aggregation (pass-fail groups
        earn their max_score as points); plain directories take their group's settings."""
        file = f"{d.rel}/test_group.yaml"
        config = d.config or {}
        if d.config is not None and role not in ("sample", "secret", "group"):
            raise PackageError(file, "only data/sample, data/secret and the groups directly "
                               "in data/secret may have a test_group.yaml")
        for key in config:
            if key not in _TEST_GROUP_KEYS:
                self.warn(f"{file}: {key}", "unknown key; ignored")
        args = self._group_args(config, file, args)
        scoring_keys = [k for k in ("max_score", "score_aggregation", "require_pass")
                        if k in config]
        if role == "sample" and scoring_keys:
            raise PackageError(f"{file}: {scoring_keys[0]}", "not permitted in sample")
        if "static_validation_score" in config:
            raise PackageError(f"{file}: static_validation_score",
                               "static validation is not supported")
        if "require_pass" in config:
            self.warn(f"{file}: require_pass", "not supported, ignored (the group is scored "
                      "whatever the groups it names got)")
        if not meta.scoring and scoring_keys:
            self.warn(f"{file}: {scoring_keys[0]}", "only for scoring problems; ignored")
        if role == "root":  # a scoring submission's score is secret's (2025-09)
            settings = {"on_reject": "continue", "ignore_sample": True} if meta.scoring else {}
        elif meta.scoring and role in ("secret", "group"):
            settings = self._score_2025(d, role, config, file)
        else:
            settings = dict(inherited)
        has_groups = role == "secret" and any(
            isinstance(c, _Dir) and c.config is not None for c in d.children)
        below = {} if role == "root" or "points" in settings else settings
        children: list[TestCase | TestGroup] = []
        for child in d.children:
            if isinstance(child, _Dir):
                if has_groups and child.config is None:
                    raise PackageError(child.rel, "data/secret holds test data groups, so "
                                       "every directory in it needs a test_group.yaml")
                kind = child.name if role == "root" else "group" if has_groups else "plain"
                children.append(self._group_2025(child, kind, below, meta, flags, args))
            else:
                if has_groups:
                    raise PackageError(f"{child.rel}.in", "data/secret holds test data "
                                       "groups, so it may not hold test cases directly")
                case_args = self._case_args(child, args)
                flags.add(meta.validator_flags + case_args, child.rel, file)
                children.append(_test_case(child))
        return TestGroup(name=d.name, children=children, **settings)

    def _score_2025(self, d: _Dir, role: str, config: dict[str, Any],
                    file: str) -> dict[str, Any]:
        max_score = config.get("max_score", 100 if role == "secret" else "unbounded")
        if max_score != "unbounded" and (isinstance(max_score, bool) or not isinstance(
                max_score, int) or max_score < 0):
            raise PackageError(f"{file}: max_score", f"{max_score!r}: expected a "
                               "non-negative integer or unbounded")
        if role == "secret":
            self.secret_bounded = max_score != "unbounded"
        elif max_score == "unbounded" and self.secret_bounded:
            raise PackageError(f"{file}: max_score", "required: secret's max_score is "
                               "bounded, so each group needs its own")
        aggregation = config.get("score_aggregation", "sum" if role == "secret" else
                                 "pass-fail")
        if aggregation not in ("pass-fail", "sum", "min"):
            raise PackageError(f"{file}: score_aggregation", f"{aggregation!r}: expected "
                               "pass-fail, sum or min")
        if aggregation == "pass-fail":
            if max_score == "unbounded":
                raise PackageError(f"{file}: max_score", "a pass-fail group needs a bounded "
                                   "max_score")
            return {"points": float(max_score)}
        settings: dict[str, Any] = {"on_reject": "continue", "aggregation": aggregation}
        if max_score == "unbounded":
            self.warn(f"{file}: max_score", "unbounded: scores come from the validator's "
                      "score.txt")
        elif not any(isinstance(c, _Dir) and c.config is not None for c in d.children):
            # Per test: max_score / N in a sum group, max_score in a min group.
            settings["accept_score"] = max_score / d.count() if aggregation == "sum" else \
                float(max_score)
        return settings

    def _group_args(self, config: dict[str, Any], file: str, inherited: list[str]) -> list[str]:
        if config.get("args"):
            raise PackageError(f"{file}: args", "command-line arguments for submissions are "
                               "not supported")
        if "output_validator_args" not in config:
            return inherited
        return _string_list(config["output_validator_args"], f"{file}: output_validator_args")

    def _case_args(self, case: _Case, inherited: list[str]) -> list[str]:
        if case.yaml is None:
            return inherited
        file = f"{case.rel}.yaml"
        for key in case.yaml:
            if key not in _CASE_KEYS:
                self.warn(f"{file}: {key}", "unknown key; ignored")
        if case.yaml.get("args"):
            raise PackageError(f"{file}: args", "command-line arguments for submissions are "
                               "not supported")
        if "output_validator_args" not in case.yaml:
            return inherited
        return _string_list(case.yaml["output_validator_args"], f"{file}: output_validator_args")

    # -- submissions/ -------------------------------------------------------------------

    def _submissions(self) -> tuple[list[KattisSubmission], list[str]]:
        found: list[KattisSubmission] = []
        skipped: list[str] = []
        base = self.root / "submissions"
        if not base.is_dir():
            self.warn("submissions/", "missing: no example submissions")
            return found, skipped
        for category in _visible(base):
            rel = f"submissions/{category.name}"
            if not category.is_dir():
                if category.name == "submissions.yaml":
                    self.warn(rel, "ignored (expected verdicts follow the directory names)")
                else:
                    skipped.append(f"{rel}: not in a category directory")
                continue
            if category.name not in CATEGORIES:
                skipped.append(f"{rel}/: {category.name!r} is not a category Warden knows "
                               f"({', '.join(CATEGORIES)})")
                continue
            for entry in _visible(category):
                files = _visible(entry) if entry.is_dir() else [entry]
                try:
                    main, language, source = self._program(files)
                except _ProgramError as e:
                    skipped.append(f"{rel}/{entry.name}: {e}")
                    continue
                path = main.relative_to(self.root).as_posix()
                found.append(KattisSubmission(path, category.name, language, source))
        if not any(s.category == "accepted" for s in found):
            self.warn("submissions/accepted", "no accepted submission Warden can run: the "
                      "time limit cannot be derived")
        return found, skipped


class _ProgramError(Exception):
    """A program Warden cannot compile as one file; the message says why."""


def _visible(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if not p.name.startswith(".")),
                  key=lambda p: p.name)


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def _inline(text: str, name: str, headers: dict[str, Path], seen: set[str],
            depth: int) -> str:
    """Replace each ``#include "x.h"`` naming a header beside the source by its text (once
    per header), so a validator with its own validate.h compiles as one file."""

    def include(m: re.Match[str]) -> str:
        target = m.group(1)
        if target not in headers:
            raise _ProgramError(f'{name} includes "{target}", which is not beside it (Warden '
                               "compiles one file and provides no such header)")
        if target in seen:
            return f"/* {target} already inlined */"
        if depth >= MAX_INCLUDE_DEPTH:
            raise _ProgramError(f'{name} includes "{target}": headers nest at most '
                               f"{MAX_INCLUDE_DEPTH} deep")
        seen.add(target)
        body = _text(headers[target])
        if body is None:
            raise _ProgramError(f"{target} is not UTF-8 text")
        line = text.count("\n", 0, m.start()) + 2
        inlined = _inline(_PRAGMA_ONCE.sub("", body), target, headers, seen, depth + 1)
        return f'#line 1 "{target}"\n{inlined}\n#line {line} "{name}"'

    return _INCLUDE.sub(include, text)


def _types(raw: Any) -> set[str]:
    part = "problem.yaml: type"
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else None
    if not values or not all(isinstance(v, str) for v in values):
        raise PackageError(part, "must be a problem type or a list of them")
    types = set(values)
    if unknown := types - {"pass-fail", "scoring", "multi-pass", "interactive",
                           "submit-answer"}:
        raise PackageError(part, f"unknown type {sorted(unknown)[0]!r}")
    if "multi-pass" in types:
        raise PackageError(part, "multi-pass problems are not supported (Warden runs a "
                           "submission once per test)")
    if "submit-answer" in types:
        raise PackageError(part, "submit-answer problems are not supported (Warden judges "
                           "programs)")
    if {"pass-fail", "scoring"} <= types:
        raise PackageError(part, "pass-fail and scoring exclude each other")
    return types


def _constants(raw: Any) -> dict[str, dict[str, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PackageError("problem.yaml: constants", "must be a map")
    found: dict[str, dict[str, str]] = {}
    for name, value in raw.items():
        variants = value if isinstance(value, dict) else {"value": value}
        if "value" not in variants:
            raise PackageError(f"problem.yaml: constants.{name}", "needs a value")
        found[str(name)] = {str(k): str(v) for k, v in variants.items()}
    return found


def _grader_flags(value: Any, part: str, *, group: str, on_reject: str,
                  warn: Callable[[str, str], None]) -> dict[str, Any]:
    """The default grader's flags (problemtools support/default_grader)."""
    settings: dict[str, Any] = {}
    for flag in str(value).split():
        if flag in ("worst_error", "no_errors", "first_error"):
            settings["verdict_mode"] = "first" if flag == "first_error" else "worst"
        elif flag in ("sum", "avg", "min", "max"):
            settings["aggregation"] = flag
        elif flag == "accept_if_any_accepted":
            settings["accept_if_any_accepted"] = True
        elif flag == "ignore_sample":
            if group != "data" and part.startswith(f"{group}/"):
                raise PackageError(part, "ignore_sample is only allowed in data/testdata.yaml")
            if group != "data":
                raise PackageError(group, f"inherits ignore_sample ({part}), which only the "
                                   "top level may have: give this group its own grader_flags")
            if on_reject == "break":
                raise PackageError(part, "ignore_sample needs on_reject: continue (with break "
                                   "a failed sample stops the secret data being judged)")
            settings["ignore_sample"] = True
        elif flag == "always_accept":
            raise PackageError(part, "always_accept is not supported")
        else:
            warn(part, f"unknown grader flag {flag!r} ignored (as the default grader does)")
    return settings


def _default_checker(flags: list[str], part: str) -> Checker:
    """The Kattis default validator's flags; it compares case-insensitively by default."""
    options: dict[str, Any] = {"case_sensitive": False}
    tolerances: dict[str, float] = {}
    rest = iter(flags)
    for flag in rest:
        if flag in ("case_sensitive", "space_change_sensitive"):
            options[flag] = True
        elif flag in ("float_tolerance", "float_relative_tolerance",
                      "float_absolute_tolerance"):
            eps = _float_or(next(rest, ""))
            if not isinstance(eps, float) or not eps >= 0:
                raise PackageError(part, f"{flag} needs a non-negative number")
            keys = ["relative", "absolute"] if flag == "float_tolerance" else [flag.split("_")[1]]
            tolerances |= {f"float_{k}_tolerance": eps for k in keys}
        else:
            raise PackageError(part, f"{flag!r} is not a default validator flag "
                               "(case_sensitive, space_change_sensitive, float_tolerance ε, "
                               "float_relative_tolerance ε, float_absolute_tolerance ε)")
    kind = CheckerKind.FLOAT if tolerances else CheckerKind.TOKENS
    return Checker(kind=kind, **options, **tolerances)


def _test_case(case: _Case) -> TestCase:
    return TestCase(name=case.name, input_sha256=case.input_sha256,
                    answer_sha256=case.answer_sha256)


def _check_name(name: str, part: str) -> None:
    if not _NAME.fullmatch(name):
        raise PackageError(part, f"the name {name!r} must match {NAME_PATTERN}")


def _float_or(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _number(value: Any, part: str, *, minimum: float | None = None,
            maximum: float | None = None) -> float:
    if isinstance(value, str):
        value = _float_or(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PackageError(part, f"{value!r} is not a number")
    if minimum is not None and value < minimum:
        raise PackageError(part, f"{value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise PackageError(part, f"{value} is more than Warden's maximum {maximum}")
    return float(value)


def _mib(value: Any, part: str, maximum: int, *, minimum: int = 1) -> int:
    mib = _number(value, part, minimum=minimum)
    if mib > maximum:
        raise PackageError(part, f"{mib:g} MiB is more than Warden's maximum {maximum} MiB")
    return int(mib * MiB)


def _string_list(value: Any, part: str) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise PackageError(part, "must be a list of strings")
    return [str(v) for v in value]


def _pydantic_message(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                     for e in error.errors())
