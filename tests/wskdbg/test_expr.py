"""MASM expression evaluator: numbers, precedence, symbols, memory, errors, ranges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskdbg.expr import (
    MASK64,
    MAX_EXPRESSION_LENGTH,
    Binary,
    ExprError,
    Group,
    MemoryAccessError,
    Number,
    Register,
    SimpleContext,
    Symbol,
    Unary,
    UserRegisters,
    evaluate,
    format_evaluate,
    parse,
    parse_address_range,
    parse_number,
)

ACCEPT_EVENT = 0xFFFFF8014AE81230
BUGCHECK_DATA = 0xFFFFF80149C01000


def make_ctx() -> SimpleContext:
    memory = bytes(range(0x20))
    return SimpleContext(
        symbols={
            "echosrv!WskSampleAcceptEvent": ACCEPT_EVENT,
            "nt!KiBugCheckData": BUGCHECK_DATA,
            "nt!DeadBeef": 0x1234,  # a name that would also read as hex without '!'
        },
        registers={
            "rip": ACCEPT_EVENT,
            "$ip": ACCEPT_EVENT,
            "rsp": 0xFFFFD00151978110,
            "r10": 0,
            "$irql": 2,
            "$thread": 0xFFFFC10A3B100080,
        },
        memory={0x1000: memory, 0xFFFFFFFFFFFFFFF8: b"\x11" * 8},
    )


def ev(text: str, **kwargs) -> int:
    return evaluate(text, make_ctx(), **kwargs)


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "radix", "expected"),
    [
        ("10", 16, 0x10),
        ("0x10", 16, 0x10),
        ("0X4aB3", 16, 0x4AB3),
        ("0n10", 16, 10),
        ("0t10", 16, 8),
        ("0y101", 16, 5),
        ("4ab3h", 16, 0x4AB3),
        ("4aB3H", 16, 0x4AB3),
        ("0", 16, 0),
        ("fffff801`4ae80000", 16, 0xFFFFF8014AE80000),
        ("FFFFF8014AE80000", 16, 0xFFFFF8014AE80000),
        ("0xfffff801`4ae80000", 16, 0xFFFFF8014AE80000),
        ("10", 10, 10),
        ("0x10", 10, 0x10),
        ("10h", 10, 0x10),
        ("17", 8, 15),
        ("0n99", 8, 99),
    ],
)
def test_number_prefixes_suffix_and_radix(text: str, radix: int, expected: int) -> None:
    assert evaluate(text, make_ctx(), radix) == expected


def test_documented_mixed_radix_example_matches_windbg_output() -> None:
    value = ev("@r10 + 0x10 + 0t10 + 0y10")
    assert format_evaluate(value) == "Evaluate expression: 26 = 00000000`0000001a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80000000", 0xFFFFFFFF80000000),
        ("EEAA1122", 0xFFFFFFFFEEAA1122),
        ("00000000EEAA1122", 0xFFFFFFFFEEAA1122),
        ("00000000`EEAA1122", 0xEEAA1122),
        ("0`EEAA1122", 0xEEAA1122),
        ("7fffffff", 0x7FFFFFFF),
        ("1`00000000", 0x100000000),
        ("0n4294967295", MASK64),
    ],
)
def test_kernel_mode_sign_extends_32_bit_constants_without_backtick(text: str, expected: int) -> None:
    assert ev(text) == expected


def test_sign_extension_can_be_turned_off_for_user_mode_rules() -> None:
    assert ev("80000000", sign_extend=False) == 0x80000000


def test_sign_extension_applies_to_constants_not_to_computed_results() -> None:
    assert ev("7fffffff + 1") == 0x80000000
    assert ev("0`ffffffff & 80000000") == 0x80000000


def test_parse_number_rejects_non_numbers() -> None:
    assert parse_number("DriverEntry") is None
    assert parse_number("`10") is None
    assert parse_number("1__0") is None  # Python's int() would accept underscores
    assert parse_number("0x") is None  # a prefix without digits: `? 0x` is a syntax error, not 0
    assert parse_number("0n") is None
    assert parse_number("19", 8) is None


# ---------------------------------------------------------------- operators and precedence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1+2*3", 7),
        ("2*3+1", 7),
        ("(1+2)*3", 9),
        ("10-4-3", 9),  # left to right
        ("100/10/2", 8),
        ("1<<2+1", 8),  # + binds tighter than <<
        ("1+1<<2", 8),
        ("1|2&3", 3),  # & tighter than |
        ("6^3&1", 7),  # & tighter than ^
        ("1 or 0 xor 1", 1),
        ("3 == 3 and 2", 0),  # comparison tighter than and
        ("2 < 3 == 1", 1),
        ("3 = 3", 1),
        ("3 != 3", 0),
        ("2 <= 2", 1),
        ("2 >= 3", 0),
        ("-2*3", (-6) & MASK64),
        ("~0+1", 0),
        ("!0+1", 2),
        ("not 5", 0),
        ("NOT(0) AND (1 = 1)", 1),
        ("7 mod 3", 1),
        ("7 MOD 3", 1),
        ("7 % 3", 1),
        ("+5", 5),
        ("--5", 5),
        ("hi(12345678)", 0x1234),
        ("low(12345678)", 0x5678),
        ("hi 12345678 + 1", 0x1235),  # unary operators bind tighter than binary
    ],
)
def test_operator_precedence_and_associativity(text: str, expected: int) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ffffffff`ffffffff + 2", 1),
        ("0-1", MASK64),
        ("80000000`00000000 * 2", 0),
        ("-8 >> 1", 0x7FFFFFFFFFFFFFFC),  # logical
        ("-8 >>> 1", (-4) & MASK64),  # arithmetic
        ("1 << 0n64", 0),
        ("-1 >> 0n64", 0),
        ("-1 >>> 0n100", MASK64),
        ("-1 > 0", 1),  # unsigned comparison (ULONG64)
        ("-8 / 2", 0x7FFFFFFFFFFFFFFC),  # unsigned division
    ],
)
def test_arithmetic_is_unsigned_64_bit_with_wraparound(text: str, expected: int) -> None:
    assert ev(text) == expected


@settings(max_examples=200, deadline=None)
@given(
    a=st.integers(0, MASK64),
    b=st.integers(0, MASK64),
    op=st.sampled_from(["+", "-", "*", "&", "|", "^", "/", "%"]),
)
def test_binary_arithmetic_matches_a_64_bit_model(a: int, b: int, op: str) -> None:
    text = f"0x{a:x} {op} 0x{b:x}"
    model = {
        "+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b,
        "/": a // b if b else None, "%": a % b if b else None,
    }[op]
    if model is None:
        with pytest.raises(ExprError, match="Divide by zero"):
            ev(text, sign_extend=False)
    else:
        assert ev(text, sign_extend=False) == model & MASK64


def test_parse_builds_an_ast_with_source_positions() -> None:
    assert parse("1+2*3") == Binary(
        "+", Number(1, False, 0, 1), Binary("*", Number(2, False, 2, 3), Number(3, False, 4, 5), 2, 5), 0, 5
    )
    assert parse("poi(@rsp)") == Unary("poi", Group(Register("rsp", 4, 8), 3, 9), 0, 9)
    assert parse("nt!KiBugCheckData+0x10") == Binary(
        "+", Symbol("nt!KiBugCheckData", 0, 17), Number(0x10, False, 18, 22), 0, 22
    )


def test_word_operators_parse_to_canonical_symbols() -> None:
    assert parse("1 and 2").op == "&"
    assert parse("1 xor 2").op == "^"
    assert parse("1 or 2").op == "|"
    assert parse("1 mod 2").op == "%"
    assert parse("1 = 2").op == "=="
    assert parse("not 1").op == "!"


# ---------------------------------------------------------------- symbols and registers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("echosrv!WskSampleAcceptEvent", ACCEPT_EVENT),
        ("echosrv!WskSampleAcceptEvent+0x10", ACCEPT_EVENT + 0x10),
        ("ECHOSRV!wsksampleacceptevent", ACCEPT_EVENT),
        ("WskSampleAcceptEvent", ACCEPT_EVENT),
        ("!KiBugCheckData", BUGCHECK_DATA),
        ("nt!DeadBeef", 0x1234),
        ("DeadBeef", 0xDEADBEEF | 0xFFFFFFFF00000000),  # a number before a symbol
        ("!DeadBeef", 0x1234),  # '!' forces the symbol
        ("@rip", ACCEPT_EVENT),
        ("@RIP", ACCEPT_EVENT),
        ("rip", ACCEPT_EVENT),  # bare word: symbol, then register
        ("@$irql", 2),
        ("@$thread", 0xFFFFC10A3B100080),
        ("$ip", ACCEPT_EVENT),
        (".", ACCEPT_EVENT),
        ("@rip - echosrv!WskSampleAcceptEvent", 0),
    ],
)
def test_symbols_and_registers_resolve_through_the_context(text: str, expected: int) -> None:
    assert ev(text) == expected


def test_user_pseudo_registers_start_at_zero_and_are_writable() -> None:
    ctx = make_ctx()
    assert evaluate("@$t0", ctx) == 0
    ctx.user.set("$t0", evaluate("@rip + 8", ctx))
    ctx.user.set("@$T19", 5)
    assert evaluate("@$t0", ctx) == ACCEPT_EVENT + 8
    assert evaluate("$t19 * 2", ctx) == 10


@pytest.mark.parametrize("name", ["$t20", "$t01", "$tx", "rip", "$t"])
def test_user_registers_reject_other_names(name: str) -> None:
    with pytest.raises(ExprError):
        UserRegisters().set(name, 1)


# ---------------------------------------------------------------- memory


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("by(1001)", 0x01),
        ("wo(1002)", 0x0302),
        ("dwo(1004)", 0x07060504),
        ("qwo(1008)", 0x0F0E0D0C0B0A0908),
        ("poi(1000)", 0x0706050403020100),
        ("poi(1000) + 1", 0x0706050403020101),
        ("by 1000+3", 3),  # by(1000) + 3
        ("by(1000+3)", 3),
        ("poi(ffffffff`fffffff8)", 0x1111111111111111),
    ],
)
def test_memory_operators_read_little_endian(text: str, expected: int) -> None:
    assert ev(text) == expected


def test_poi_reads_pointer_size_of_the_target() -> None:
    assert ev("poi(1000)", pointer_size=4) == 0x03020100


def test_simple_context_raises_memory_access_error_for_unmapped_bytes() -> None:
    with pytest.raises(MemoryAccessError):
        make_ctx().read_memory(0x101C, 8)  # runs past the end of the region


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("foo!bar", "Couldn't resolve error at 'foo!bar'", 0),
        ("1 + foo!bar+2", "Couldn't resolve error at 'foo!bar+2'", 4),
        ("nosuchname", "Couldn't resolve error at 'nosuchname'", 0),
        ("poi(0)", "Memory access error at ')'", 5),
        ("poi 0", "Memory access error at '0'", 4),
        ("dwo(101e)", "Memory access error at ')'", 8),
        ("poi(ffffffff`fffffff9)", "Memory access error at ')'", 21),
        ("1 +", "Syntax error at ''", 3),
        ("", "Syntax error at ''", 0),
        ("(1", "Syntax error at ''", 2),
        ("1)", "Syntax error at ')'", 1),
        ("1 2", "Syntax error at '2'", 2),
        ("0xzz", "Syntax error at '0xzz'", 0),
        ("1 # 2", "Syntax error at '# 2'", 2),
        ("@@(1)", "Syntax error at '@@(1)'", 0),
        ("1/0", "Divide by zero error at '0'", 2),
        ("5 mod (1-1)", "Divide by zero error at '(1-1)'", 6),
        ("@bogus", "Bad register error at '@bogus'", 0),
        ("1`0000000000000000", "Numeric overflow error at '1`0000000000000000'", 0),
    ],
)
def test_errors_name_the_problem_and_point_at_it(text: str, message: str, position: int) -> None:
    with pytest.raises(ExprError) as caught:
        ev(text)
    assert caught.value.message == message
    assert str(caught.value) == message
    assert caught.value.position == position


def test_hex_looking_word_is_not_a_number_in_radix_10() -> None:
    with pytest.raises(ExprError) as caught:
        evaluate("ff", make_ctx(), 10)
    assert caught.value.message == "Couldn't resolve error at 'ff'"


def test_caret_display_points_under_the_error() -> None:
    text = "poi(0) + 1"
    with pytest.raises(ExprError) as caught:
        ev(text)
    assert caught.value.caret(text) == "poi(0) + 1\n     ^ Memory access error at ') + 1'"


def test_deep_nesting_is_a_typed_error_not_a_crash() -> None:
    with pytest.raises(ExprError):
        ev("(" * 5000 + "1" + ")" * 5000)
    with pytest.raises(ExprError):
        ev("-" * 5000 + "1")


def test_long_left_deep_chain_evaluates_without_recursion() -> None:
    text = "+".join(["1"] * 2000)  # 2000 Binary nodes deep on the left spine
    assert len(text) <= MAX_EXPRESSION_LENGTH
    assert ev(text) == 2000
    assert ev("-".join(["1"] * 2000)) == (1 - 1999) & MASK64


def test_twenty_thousand_terms_is_an_expression_too_long_error() -> None:
    text = "+".join(["1"] * 20000)
    with pytest.raises(ExprError) as caught:
        ev(text)
    assert caught.value.message == f"Expression too long: {len(text)} characters (the limit is 4096)"
    assert caught.value.position == 0


def test_rising_precedence_nesting_counts_toward_the_depth_limit() -> None:
    # Each level recurses through every precedence level once: without counting
    # binary right operands this overflowed Python's stack within the length cap.
    text = "(1|1^1&1==1<<1+1*-" * 150 + "1" + ")" * 150
    assert len(text) <= MAX_EXPRESSION_LENGTH
    with pytest.raises(ExprError) as caught:
        ev(text)
    assert caught.value.message.startswith("Expression too deeply nested error at ")
    shallow = "(1|1^1&1==1<<1+1*-" * 20 + "1" + ")" * 20
    assert ev(shallow) == 1


def test_error_message_quotes_at_most_forty_characters_of_the_rest() -> None:
    with pytest.raises(ExprError) as caught:
        ev("1 + " + "x" * 100)
    assert caught.value.message == "Couldn't resolve error at '" + "x" * 40 + "...'"
    assert caught.value.position == 4
    with pytest.raises(ExprError) as caught:
        ev("1 + " + "y" * 40)
    assert caught.value.message == "Couldn't resolve error at '" + "y" * 40 + "'"


def test_bad_radix_is_rejected() -> None:
    with pytest.raises(ExprError):
        evaluate("1", make_ctx(), 7)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefxnty`!@$.()+-*/%<>=&^|~ LhpoiNT_", max_size=30))
def test_any_input_either_evaluates_or_raises_expr_error(text: str) -> None:
    try:
        value = ev(text)
    except ExprError as exc:
        assert 0 <= exc.position <= len(text)
    else:
        assert 0 <= value <= MASK64


# ---------------------------------------------------------------- round trips


def _sign_extended(value: int) -> int:
    return value | 0xFFFFFFFF00000000 if 0x80000000 <= value <= 0xFFFFFFFF else value


_FORMATS = {
    "0x": (lambda v: f"0x{v:x}", True),
    "0X upper": (lambda v: f"0X{v:X}", True),
    "0n": (lambda v: f"0n{v}", True),
    "0t": (lambda v: f"0t{v:o}", True),
    "0y": (lambda v: f"0y{v:b}", True),
    "h suffix": (lambda v: f"{v:x}h", True),
    "bare": (lambda v: f"{v:x}", True),
    "backtick": (lambda v: f"{v >> 32:08x}`{v & 0xFFFFFFFF:08x}", False),
}


@settings(max_examples=300, deadline=None)
@given(value=st.integers(0, MASK64), style=st.sampled_from(sorted(_FORMATS)))
def test_number_round_trip_in_every_notation(value: int, style: str) -> None:
    render, extends = _FORMATS[style]
    text = render(value)
    assert evaluate(text, make_ctx(), sign_extend=False) == value
    assert evaluate(text, make_ctx()) == (_sign_extended(value) if extends else value)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, MASK64))
def test_format_evaluate_round_trips_through_evaluate(value: int) -> None:
    line = format_evaluate(value)
    decimal, hex_part = line.removeprefix("Evaluate expression: ").split(" = ")
    assert int(decimal) & MASK64 == value
    assert evaluate(hex_part, make_ctx()) == value  # backtick form is never sign-extended
    assert evaluate(f"0n{decimal}" if not decimal.startswith("-") else f"-0n{decimal[1:]}",
                    make_ctx(), sign_extend=False) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0x10, "Evaluate expression: 16 = 00000000`00000010"),
        (0, "Evaluate expression: 0 = 00000000`00000000"),
        (MASK64, "Evaluate expression: -1 = ffffffff`ffffffff"),
        (0x00007FF96BB40770, "Evaluate expression: 140709230544752 = 00007ff9`6bb40770"),
        (0x409, "Evaluate expression: 1033 = 00000000`00000409"),
        (1 << 63, "Evaluate expression: -9223372036854775808 = 80000000`00000000"),
        (-2, "Evaluate expression: -2 = ffffffff`fffffffe"),
    ],
)
def test_format_evaluate_matches_windbg(value: int, expected: str) -> None:
    assert format_evaluate(value) == expected


# ---------------------------------------------------------------- address ranges


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("1000", 1, (0x1000, 0x80)),
        ("1000", 4, (0x1000, 0x20)),
        ("1000 L8", 1, (0x1000, 8)),
        ("1000 l8", 4, (0x1000, 8)),
        ("1000 L 2+2", 4, (0x1000, 4)),
        ("1000 L?8", 1, (0x1000, 8)),
        ("1000 L-20", 1, (0xFE0, 0x20)),
        ("80000000`00000000 L-2", 8, (0x7FFFFFFFFFFFFFF0, 2)),
        ("1000 1007", 1, (0x1000, 8)),
        ("1000 1007", 4, (0x1000, 2)),
        ("1000 1004", 4, (0x1000, 2)),
        ("1000 1000", 8, (0x1000, 1)),
        ("poi(1000) L2", 8, (0x0706050403020100, 2)),
        ("echosrv!WskSampleAcceptEvent+8 L4", 1, (ACCEPT_EVENT + 8, 4)),
        ("@rip - 10 @rip", 1, (ACCEPT_EVENT - 0x10, 0x11)),
        ("1000 L?20000000", 1, (0x1000, 0x20000000)),
    ],
)
def test_address_range_forms(text: str, unit: int, expected: tuple[int, int]) -> None:
    assert parse_address_range(text, make_ctx(), 0x80, unit) == expected


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("1000 L20000000", "Range error at 'L20000000'", 5),
        ("1000 L4000001", "Range error at 'L4000001'", 5),  # 4 * 0x4000001 bytes > 256 MB
        ("1000 fff", "Range error at 'fff'", 5),
        ("1000 L", "Syntax error at ''", 6),
        ("1000 L4 5", "Syntax error at '5'", 8),
        ("1000 L?", "Syntax error at ''", 7),
        ("foo!bar L4", "Couldn't resolve error at 'foo!bar L4'", 0),
    ],
)
def test_address_range_errors(text: str, message: str, position: int) -> None:
    unit = 4 if "4000001" in text else 1
    with pytest.raises(ExprError) as caught:
        parse_address_range(text, make_ctx(), 0x80, unit)
    assert caught.value.message == message
    assert caught.value.position == position
