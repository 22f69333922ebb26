"""Built-in output checkers: exact bytes, and Kattis's default validator (tokens, floats).

The token rules follow problemtools' ``default_validator``: whitespace is space, \\t, \\n, \\v,
\\f, \\r; tokens are compared one by one; ``space_change_sensitive`` also requires the same
whitespace between them; with floats, an answer token that is a number accepts any output
number within the absolute *or* the relative tolerance. Work is linear in the sizes and done
on bytes (C-level splits and compares), so multi-MB outputs stay fast and non-UTF-8 output is
compared as it is; text is decoded (with replacement) only to write a message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from judge.problem import Checker, CheckerKind
from judge.verdicts import Verdict

QUOTE_CHARS: Final = 40  # longest token a message quotes
_WS: Final = b" \t\n\v\f\r"
_WS_RUN: Final = re.compile(rb"[ \t\n\v\f\r]+")
_TOKEN: Final = re.compile(rb"[^ \t\n\v\f\r]+")
_HEX: Final = re.compile(
    rb"[+-]?0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?", re.IGNORECASE)
_ESCAPES: Final = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\v": "\\v", "\f": "\\f"}
_CHUNK: Final = 1 << 16
_MARK_TOKENS: Final = bytes(b if b in _WS else ord("x") for b in range(256))
_T = TypeVar("_T")


@dataclass(frozen=True)
class CheckOutcome:
    """What a checker decided about one test: a verdict, why, and a score when it gave one."""

    verdict: Verdict
    message: str | None = None
    score: float | None = None


def check_output(checker: Checker, output: bytes, answer: bytes) -> CheckOutcome:
    """Judge ``output`` against ``answer`` with a built-in checker (not a checker program)."""
    if checker.kind in (CheckerKind.KATTIS, CheckerKind.TESTLIB):
        raise ValueError(f"a {checker.kind.value} checker is a program, not a built-in")
    if output == answer:
        return CheckOutcome(Verdict.AC)
    if checker.kind is CheckerKind.EXACT:
        return CheckOutcome(Verdict.WA, _exact_message(output, answer))
    out, ans = output.split(), answer.split()
    failure = _compare_tokens(output, answer, out, ans, _token_rule(checker),
                              checker.case_sensitive)
    if failure is None and checker.space_change_sensitive:
        failure = _compare_spaces(output, answer)
    return CheckOutcome(Verdict.AC) if failure is None else CheckOutcome(Verdict.WA, failure)


def parse_float(token: bytes) -> float | None:
    """A token's value as C's strtod reads a whole token (decimal, hex, inf, nan), else None.
    Python's float() of bytes is strtod's decimal syntax plus digit underscores."""
    if b"_" not in token:
        try:
            return float(token)
        except ValueError:
            pass
    if _HEX.fullmatch(token):
        return float.fromhex(token.decode("ascii"))
    return None


# --- token rules -----------------------------------------------------------------------

TokenRule = Callable[[bytes, bytes], str | None]  # (output, answer) -> None if same, else why
# (out, ans, i, n) -> the first index from i on whose tokens may differ (n if none)
Skipper = Callable[[list[bytes], list[bytes], int, int], int]


def _token_rule(checker: Checker) -> tuple[TokenRule, Skipper]:
    """The rule for one token pair, and a loop that passes over pairs it surely accepts
    (the per-token work of a multi-MB output stays in one Python frame)."""
    fold = not checker.case_sensitive

    def strings(out: bytes, ans: bytes) -> str | None:
        if out == ans or (fold and out.lower() == ans.lower()):
            return None
        return ""

    if checker.kind is not CheckerKind.FLOAT:
        return strings, _skip_equal
    abs_tol = checker.float_absolute_tolerance
    rel_tol = checker.float_relative_tolerance

    def numbers(out: bytes, ans: bytes) -> str | None:
        expected = parse_float(ans)
        if expected is None:
            return strings(out, ans)
        got = parse_float(out)
        if got is None:
            return " (not a number)"
        if _close(got, expected, abs_tol, rel_tol):
            return None
        if math.isfinite(got) and math.isfinite(expected):
            return f" (difference {abs(got - expected):.3g})"
        return ""

    return numbers, _float_skipper(abs_tol, rel_tol)


def _skip_equal(out: list[bytes], ans: list[bytes], i: int, n: int) -> int:
    while i < n and out[i] == ans[i]:
        i += 1
    return i


def _float_skipper(abs_tol: float | None, rel_tol: float | None) -> Skipper:
    """Passes over equal tokens and plain decimal numbers within tolerance; anything else
    (hex, inf, nan, underscores, words, a real difference) is left to the full rule."""
    abs_t = -1.0 if abs_tol is None else abs_tol
    rel_t = -1.0 if rel_tol is None else rel_tol

    def skip(out: list[bytes], ans: list[bytes], i: int, n: int) -> int:
        while i < n:
            o, a = out[i], ans[i]
            if o != a:
                if b"_" in o or b"_" in a:
                    return i
                try:
                    expected = float(a)
                    diff = abs(float(o) - expected)
                except ValueError:
                    return i
                if diff == math.inf or not (diff <= abs_t or diff <= rel_t * abs(expected)):
                    return i
            i += 1
        return n

    return skip


def _close(got: float, expected: float, abs_tol: float | None, rel_tol: float | None) -> bool:
    """Within either tolerance; an answer of inf or nan needs exactly that (any nan)."""
    if math.isnan(expected):
        return math.isnan(got)
    if math.isinf(expected) or not math.isfinite(got):
        return got == expected
    diff = abs(got - expected)
    return (abs_tol is not None and diff <= abs_tol) or \
        (rel_tol is not None and diff <= rel_tol * abs(expected))


def _compare_tokens(output: bytes, answer: bytes, out: list[bytes], ans: list[bytes],
                    rule: tuple[TokenRule, Skipper], case_sensitive: bool) -> str | None:
    """None when every token matches, else the first difference in words."""
    index, why = _first_mismatch(output, answer, out, ans, rule, case_sensitive)
    if index is not None:
        line, col = _locate(output, index)
        return (f"line {line}, token {col}: expected {_quote(ans[index])}, "
                f"got {_quote(out[index])}{why}")
    if len(out) < len(ans):
        return (f"output has fewer tokens than the answer ({len(out)} vs {len(ans)}); "
                f"next expected {_quote(ans[len(out)])}")
    if len(out) > len(ans):
        line, col = _locate(output, len(ans))
        return (f"output has more tokens than the answer ({len(out)} vs {len(ans)}); "
                f"line {line}, token {col}: unexpected {_quote(out[len(ans)])}")
    return None


def _first_mismatch(output: bytes, answer: bytes, out: list[bytes], ans: list[bytes],
                    rule: tuple[TokenRule, Skipper],
                    case_sensitive: bool) -> tuple[int | None, str]:
    """The first token pair the rule rejects, with its reason. Pairs equal as bytes (or
    after folding case) always match, so C-level compares skip them before per-token work."""
    same, skip = rule
    n = min(len(out), len(ans))
    start = _common_prefix(out, ans, n)
    if start < n and not case_sensitive:
        start = _common_prefix(output.lower().split(), answer.lower().split(), n)
    i = start
    while (i := skip(out, ans, i, n)) < n:
        why = same(out[i], ans[i])
        if why is not None:
            return i, why
        i += 1
    return None, ""


def _compare_spaces(output: bytes, answer: bytes) -> str | None:
    """The first place the whitespace differs (tokens already match one for one, so the
    runs of whitespace line up unless one text starts with whitespace and the other not)."""
    if output[:1].isspace() != answer[:1].isspace():
        pos_out = pos_ans = 0
    else:
        runs_out, runs_ans = _runs(output), _runs(answer)
        j = _common_prefix(runs_out, runs_ans, max(len(runs_out), len(runs_ans)))
        if j == len(runs_out) == len(runs_ans):
            return None
        pos_out, pos_ans = _run_start(output, j), _run_start(answer, j)
    line = output.count(b"\n", 0, pos_out) + 1
    return (f"line {line}: whitespace differs: expected {_describe_at(answer, pos_ans)}, "
            f"got {_describe_at(output, pos_out)}")


def _runs(data: bytes) -> list[bytes]:
    """The whitespace runs of ``data``, in order (C-level: mark, split, drop empties)."""
    return list(filter(None, data.translate(_MARK_TOKENS).split(b"x")))


def _run_start(data: bytes, index: int) -> int:
    """Where whitespace run ``index`` starts (the end of ``data`` if it has fewer)."""
    skip = re.compile(rb"(?:[^%s]*+[%s]++){%d}[^%s]*+" % (_WS, _WS, index, _WS))
    match = skip.match(data)
    return match.end() if match else 0


def _describe_at(data: bytes, pos: int) -> str:
    match = _WS_RUN.match(data, pos) or _TOKEN.match(data, pos)
    return "end of output" if match is None else _quote(match.group(0))


# --- exact -----------------------------------------------------------------------------

def _exact_message(output: bytes, answer: bytes) -> str:
    pos = _first_difference(output, answer)
    if pos == len(output):
        return f"output is shorter than the answer ({len(output)} bytes vs {len(answer)})"
    if pos == len(answer):
        return f"output is longer than the answer ({len(output)} bytes vs {len(answer)})"
    line = output.count(b"\n", 0, pos) + 1
    col = pos - (output.rfind(b"\n", 0, pos) + 1) + 1
    return (f"byte {pos + 1} (line {line}, column {col}) differs: expected "
            f"{_quote(answer[pos:pos + 20])}, got {_quote(output[pos:pos + 20])}")


def _first_difference(a: bytes, b: bytes) -> int:
    return _common_prefix(a, b, min(len(a), len(b)))


def _common_prefix(a: Sequence[_T], b: Sequence[_T], n: int) -> int:
    """The length (at most ``n``) of the common prefix: chunks compared in C, then items."""
    pos = 0
    while pos < n and a[pos:pos + _CHUNK] == b[pos:pos + _CHUNK]:
        pos += _CHUNK
    end = min(pos + _CHUNK, n, len(a), len(b))
    while pos < end and a[pos] == b[pos]:
        pos += 1
    return min(pos, n)


# --- messages --------------------------------------------------------------------------

def _locate(data: bytes, index: int) -> tuple[int, int]:
    """(line, token within the line), 1-based, of token ``index`` of ``data``."""
    skip = re.compile(rb"(?:[%s]*+[^%s]++){%d}[%s]*+" % (_WS, _WS, index, _WS))
    match = skip.match(data)
    start = match.end() if match else 0
    line_start = data.rfind(b"\n", 0, start) + 1
    return data.count(b"\n", 0, start) + 1, len(data[line_start:start].split()) + 1


def _quote(data: bytes) -> str:
    """A short, printable rendering of a token or a whitespace run."""
    text = data[:QUOTE_CHARS * 4].decode("utf-8", errors="replace")
    cut = len(text) > QUOTE_CHARS
    text = "".join(_ESCAPES.get(c) or (c if c.isprintable() else
                                       c.encode("unicode_escape").decode("ascii"))
                   for c in text[:QUOTE_CHARS])
    return f"'{text}…'" if cut else f"'{text}'"
