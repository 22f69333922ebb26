"""Built-in checkers: exact bytes and Kattis's default validator (tokens, floats)."""

from __future__ import annotations

import time

import pytest

from judge.checkers import QUOTE_CHARS, CheckOutcome, check_output, parse_float
from judge.problem import Checker, CheckerKind, Program
from judge.verdicts import Verdict

TOKENS = Checker()
EXACT = Checker(kind=CheckerKind.EXACT)
FOLD = Checker(case_sensitive=False)
SPACES = Checker(space_change_sensitive=True)


def floats(abs_tol: float | None = None, rel_tol: float | None = None, **kw: bool) -> Checker:
    return Checker(kind=CheckerKind.FLOAT, float_absolute_tolerance=abs_tol,
                   float_relative_tolerance=rel_tol, **kw)


def verdict(checker: Checker, output: bytes, answer: bytes) -> Verdict:
    return check_output(checker, output, answer).verdict


def wa_message(checker: Checker, output: bytes, answer: bytes) -> str:
    outcome = check_output(checker, output, answer)
    assert outcome.verdict is Verdict.WA
    assert outcome.message is not None
    return outcome.message


def test_exact_is_byte_equality() -> None:
    assert check_output(EXACT, b"1 2\n", b"1 2\n") == CheckOutcome(Verdict.AC)
    assert verdict(EXACT, b"1 2", b"1 2\n") is Verdict.WA
    assert verdict(EXACT, b"1  2\n", b"1 2\n") is Verdict.WA
    assert verdict(EXACT, b"\xff\x00", b"\xff\x00") is Verdict.AC


def test_exact_messages_point_at_the_difference() -> None:
    assert wa_message(EXACT, b"abc\ndef", b"abc\ndxf") == (
        "byte 6 (line 2, column 2) differs: expected 'xf', got 'ef'")
    assert "shorter" in wa_message(EXACT, b"ab", b"abc")
    assert "longer" in wa_message(EXACT, b"abcd", b"abc")


def test_tokens_ignore_the_amount_and_kind_of_whitespace() -> None:
    answer = b"1 2\n3\n"
    for output in (b"1 2 3", b"  1\t2\r\n3", b"1\n2\n3\n\n\n", b"\v1\f2 3"):
        assert verdict(TOKENS, output, answer) is Verdict.AC, output
    assert verdict(TOKENS, b"", b"\n \n") is Verdict.AC


def test_tokens_are_compared_whole() -> None:
    assert verdict(TOKENS, b"12 3", b"1 23") is Verdict.WA
    assert verdict(TOKENS, b"1.0", b"1") is Verdict.WA  # strings unless FLOAT
    assert wa_message(TOKENS, b"1 2\n5 7", b"1 2\n5 6") == "line 2, token 2: expected '6', got '7'"


def test_token_count_mismatch_is_wrong_answer() -> None:
    assert wa_message(TOKENS, b"1 2", b"1 2 3") == (
        "output has fewer tokens than the answer (2 vs 3); next expected '3'")
    assert wa_message(TOKENS, b"1 2 3\n4", b"1 2 3") == (
        "output has more tokens than the answer (4 vs 3); line 2, token 1: unexpected '4'")
    assert verdict(TOKENS, b"", b"0") is Verdict.WA


def test_case_sensitivity() -> None:
    assert verdict(TOKENS, b"YES", b"yes") is Verdict.WA
    assert verdict(FOLD, b"YES", b"yes") is Verdict.AC
    assert verdict(FOLD, b"Yes nO", b"yes no") is Verdict.AC
    assert wa_message(FOLD, b"a B c", b"A b d") == "line 1, token 3: expected 'd', got 'c'"


def test_space_change_sensitive_needs_the_same_whitespace() -> None:
    assert verdict(SPACES, b"1 2\n3\n", b"1 2\n3\n") is Verdict.AC
    assert wa_message(SPACES, b"1  2", b"1 2") == (
        "line 1: whitespace differs: expected ' ', got '  '")
    assert wa_message(SPACES, b"1 2", b"1 2\n") == (
        "line 1: whitespace differs: expected '\\n', got end of output")
    assert wa_message(SPACES, b"1\n2 3\n", b"1\n2\n3\n") == (
        "line 2: whitespace differs: expected '\\n', got ' '")
    assert "expected '1', got ' '" in wa_message(SPACES, b" 1", b"1")
    assert verdict(SPACES, b"1\r\n", b"1\n") is Verdict.WA
    # tokens are still compared first, and by the checker's own rule
    assert wa_message(SPACES, b"1 3", b"1 2") == "line 1, token 2: expected '2', got '3'"
    # only the six whitespace bytes are whitespace (not a backslash, 'n' or 't')
    assert wa_message(SPACES, b"\\n  nt", b"\\n nt") == (
        "line 1: whitespace differs: expected ' ', got '  '")
    assert verdict(SPACES, b"a\x1cb", b"a\x1cb ") is Verdict.WA
    fold = Checker(space_change_sensitive=True, case_sensitive=False)
    assert verdict(fold, b"A\nb", b"a\nB") is Verdict.AC
    assert verdict(fold, b"A b", b"a\nB") is Verdict.WA


def test_float_absolute_and_relative_tolerance() -> None:
    abs_only = floats(abs_tol=1e-6)
    assert verdict(abs_only, b"1.0000005", b"1") is Verdict.AC
    assert verdict(abs_only, b"1.00001", b"1") is Verdict.WA
    assert verdict(abs_only, b"1000000.5", b"1000000") is Verdict.WA
    rel_only = floats(rel_tol=1e-6)
    assert verdict(rel_only, b"1000000.5", b"1000000") is Verdict.AC
    assert verdict(rel_only, b"0.5e-6", b"0") is Verdict.WA
    assert verdict(rel_only, b"0", b"0.0") is Verdict.AC
    both = floats(abs_tol=1e-6, rel_tol=1e-6)  # either tolerance suffices
    assert verdict(both, b"1000000.5 0.0000005", b"1000000 0") is Verdict.AC
    message = wa_message(abs_only, b"1 1.5", b"1 1.25")
    assert message == "line 1, token 2: expected '1.25', got '1.5' (difference 0.25)"


def test_float_formats_of_the_output() -> None:
    checker = floats(abs_tol=1e-9)
    for output in (b"100", b"1e2", b"1E+2", b"100.", b"+100.000", b"0x1.9p6"):
        assert verdict(checker, output, b"100.0") is Verdict.AC, output
    for output in (b"1_00", b"100abc", b"0x", b"--100", b"1e"):
        message = wa_message(checker, output, b"100")
        assert message.endswith("(not a number)"), output


def test_float_non_numeric_answer_tokens_are_strings() -> None:
    checker = floats(abs_tol=0.5)
    assert verdict(checker, b"Case 1: 2.1", b"Case 1: 2") is Verdict.AC
    assert verdict(checker, b"case 1: 2", b"Case 1: 2") is Verdict.WA
    assert verdict(floats(abs_tol=0.5, case_sensitive=False), b"case 1: 2", b"Case 1: 2") \
        is Verdict.AC


def test_float_infinity_and_nan() -> None:
    checker = floats(abs_tol=1e-6, rel_tol=1e-6)
    assert verdict(checker, b"inf", b"inf") is Verdict.AC
    assert verdict(checker, b"Infinity", b"inf") is Verdict.AC
    assert verdict(checker, b"1e400", b"inf") is Verdict.AC  # overflows to inf, as strtod
    assert verdict(checker, b"-inf", b"inf") is Verdict.WA
    assert verdict(checker, b"1e300", b"inf") is Verdict.WA
    assert verdict(checker, b"inf", b"1e300") is Verdict.WA
    assert verdict(checker, b"nan", b"1") is Verdict.WA
    assert verdict(checker, b"NaN", b"nan") is Verdict.AC
    assert verdict(checker, b"1", b"nan") is Verdict.WA


def test_float_overflowing_difference_is_rejected() -> None:
    assert verdict(floats(rel_tol=1.0), b"-1e308", b"1.7e308") is Verdict.WA


def test_parse_float_follows_strtod() -> None:
    assert parse_float(b"-.5e1") == -5.0
    assert parse_float(b"0X1P-1") == 0.5
    assert parse_float(b"1_0") is None
    assert parse_float(b"") is None
    assert parse_float(b"\xd9\xa1") is None  # an Arabic-Indic digit is no digit here


def test_non_utf8_output_is_compared_as_bytes() -> None:
    assert verdict(TOKENS, b"\xff\xfe 1", b"\xff\xfe 1") is Verdict.AC
    assert verdict(TOKENS, b"\xff\xfd", b"\xff\xfe") is Verdict.WA
    assert "\ufffd" in wa_message(TOKENS, b"\xff", b"x")


def test_messages_quote_at_most_a_few_dozen_characters() -> None:
    message = wa_message(TOKENS, b"x" * 1_000_000, b"y")
    assert len(message) < 2 * QUOTE_CHARS + 60
    assert "x" * QUOTE_CHARS + "…'" in message
    assert "\\x00" in wa_message(TOKENS, b"a\x00b", b"ab")


def test_custom_checker_kinds_are_not_built_ins() -> None:
    program = Program(wasm_sha256="0" * 64)
    for kind in (CheckerKind.KATTIS, CheckerKind.TESTLIB):
        with pytest.raises(ValueError, match="program"):
            check_output(Checker(kind=kind, program=program), b"", b"")


def _timed(checker: Checker, output: bytes, answer: bytes) -> CheckOutcome:
    start = time.perf_counter()
    outcome = check_output(checker, output, answer)
    assert time.perf_counter() - start < 0.5
    return outcome


@pytest.fixture(scope="module")
def huge() -> bytes:
    answer = b"\n".join(b"%d %d.5" % (i, i) for i in range(200_000)) + b"\n"
    assert len(answer) > 2_000_000
    return answer


@pytest.mark.parametrize("checker", [TOKENS, FOLD, SPACES, EXACT, floats(abs_tol=0.01)],
                         ids=["tokens", "fold", "spaces", "exact", "float"])
def test_huge_outputs_are_fast(huge: bytes, checker: Checker) -> None:
    assert _timed(checker, huge[:-1], huge).verdict is (
        Verdict.WA if checker in (SPACES, EXACT) else Verdict.AC)
    wrong = huge[:-2] + b"6\n"  # the very last token differs
    outcome = _timed(checker, wrong, huge)
    assert outcome.verdict is Verdict.WA
    if checker is not EXACT:
        assert outcome.message is not None
        assert outcome.message.startswith(
            "line 200000, token 2: expected '199999.5', got '199999.6'")


def test_huge_whitespace_difference_is_fast(huge: bytes) -> None:
    one_line = huge.replace(b"\n", b" ")
    assert _timed(TOKENS, one_line, huge).verdict is Verdict.AC
    assert _timed(SPACES, one_line, huge).message == (
        "line 1: whitespace differs: expected '\\n', got ' '")
    # tokens that differ as bytes but match as floats, so every one is parsed
    reformatted = huge[-500_000:].replace(b".5", b".50")
    lines = reformatted.count(b"\n")
    assert _timed(floats(abs_tol=0.01, space_change_sensitive=True), reformatted[:-1],
                  huge[-500_000:]).message == (
        f"line {lines}: whitespace differs: expected '\\n', got end of output")
