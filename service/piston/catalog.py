"""Piston's names for Warden's languages: the one mapping of Piston language names, aliases
and versions onto the language registry (which stays the source of truth)."""

from __future__ import annotations

import re
from typing import Any, Final

from sandboxes.languages.registry import LANGUAGES, Language

# Warden language id -> (Piston's language name, its aliases as Piston lists them)
NAMES: Final = {
    "c": ("c", ("gcc",)),
    "cpp": ("c++", ("cpp", "g++")),
    "go": ("go", ("go", "golang")),
    "javascript": ("javascript", ("js", "quickjs")),
    "python": ("python", ("py", "py3", "python3")),
    "ruby": ("ruby", ("ruby3", "rb")),
    "rust": ("rust", ("rs",)),
    "zig": ("zig", ("zig",)),
}
# Piston names a runtime only where it is not the obvious one: Warden's JavaScript is
# QuickJS, not Node, and says so.
RUNTIMES: Final = {"javascript": "quickjs"}
_SEMVER: Final = re.compile(r"\d+\.\d+(?:\.\d+)?")


def version(language: Language) -> str:
    """A SemVer for the language (Piston's clients match versions as SemVer)."""
    found = _SEMVER.search(language.version)
    if found is None:
        return language.version
    parts = found.group(0).split(".")
    return ".".join(([*parts, "0"])[:3])


def runtimes() -> list[dict[str, Any]]:
    listed = []
    for language_id, (name, aliases) in NAMES.items():
        language = LANGUAGES.get(language_id)
        if language is None:
            continue
        entry: dict[str, Any] = {"language": name, "version": version(language),
                                 "aliases": list(aliases)}
        if language_id in RUNTIMES:
            entry["runtime"] = RUNTIMES[language_id]
        listed.append(entry)
    return listed


def _matches(selector: str, semver: str) -> bool:
    """Piston's version selector, as its clients use it: ``*``, an exact version, or a
    prefix with ``x``/``*`` wildcards (``3``, ``3.x``, ``3.13.*``)."""
    wanted = selector.strip().lstrip("v")
    if wanted in ("*", "x", "latest"):
        return True
    have = semver.split(".")
    for i, part in enumerate(wanted.split(".")):
        if part in ("x", "*", "X"):
            continue
        if i >= len(have) or part != have[i]:
            return False
    return True


def find(name: str, selector: str) -> Language | None:
    """The Warden language a Piston ``language`` (name or alias) and ``version`` name."""
    wanted = name.strip().lower()
    for language_id, (piston_name, aliases) in NAMES.items():
        language = LANGUAGES.get(language_id)
        if language is None or wanted not in (piston_name, *aliases):
            continue
        if _matches(selector, version(language)):
            return language
    return None


def piston_name(language: Language) -> str:
    return NAMES[language.id][0]
