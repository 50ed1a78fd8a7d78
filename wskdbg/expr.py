"""MASM-style expression evaluator, the language of WinDbg's `?` command.

Text is tokenized by hand, parsed by precedence climbing into a small AST, then
evaluated against an :class:`ExprContext` that resolves symbols, registers and
memory. Arithmetic is unsigned 64-bit with wraparound, as in the debugger.
Python's ``eval`` is never involved.

Numbers: default radix 16 (or the ``radix`` argument, like ``n 10``); prefixes
``0x`` ``0n`` ``0t`` ``0y``; an ``h`` suffix; backtick separators
(``fffff801`4ae80000``). As in kernel-mode WinDbg, a constant from 0x80000000
to 0xffffffff written without a backtick is sign-extended to 64 bits.

Binary precedence, highest first (same row = same level, left to right):
``* / % mod`` > ``+ -`` > ``<< >> >>>`` > ``= == < > <= >= !=`` > ``& and``
> ``^ xor`` > ``| or``. ``>>`` is a logical shift, ``>>>`` arithmetic.
Unary operators bind tightest: ``+ - ~ ! not hi low by wo dwo qwo poi``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Union

MASK64 = (1 << 64) - 1
_SIGN_BIT = 1 << 63
# A range longer than this needs `L?`; longer ranges are usually typos.
RANGE_LIMIT_BYTES = 0x10000000
# Nesting of parentheses, unary operators and right operands of binary operators
# of rising precedence; each level costs a few Python frames in parser and evaluator.
_MAX_DEPTH = 200
# Longer input is refused before tokenizing (WinDbg's own command line is shorter).
MAX_EXPRESSION_LENGTH = 4096
# Error messages quote at most this much of the text after the failing spot.
_QUOTE_LIMIT = 40

__all__ = [
    "MASK64",
    "MAX_EXPRESSION_LENGTH",
    "RANGE_LIMIT_BYTES",
    "ExprError",
    "MemoryAccessError",
    "ExprContext",
    "UserRegisters",
    "SimpleContext",
    "Number",
    "Symbol",
    "Register",
    "Group",
    "Unary",
    "Binary",
    "Expr",
    "parse",
    "parse_number",
    "evaluate",
    "evaluate_ast",
    "format_evaluate",
    "parse_address_range",
    "to_signed64",
]


# --------------------------------------------------------------------------- errors


class ExprError(Exception):
    """A bad expression; ``position`` indexes the input text for a caret display."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def caret(self, text: str) -> str:
        """Two lines: the input, then a caret under the failing spot and the message."""
        column = max(0, min(self.position, len(text)))
        return f"{text}\n{' ' * column}^ {self.message}"

    def __str__(self) -> str:
        return self.message


class MemoryAccessError(Exception):
    """Raised by a context when target memory cannot be read."""

    def __init__(self, address: int, size: int = 1) -> None:
        super().__init__(f"Memory access error at {address:#x} (size {size})")
        self.address = address
        self.size = size


def _error(kind: str, text: str, position: int) -> ExprError:
    # WinDbg quotes the rest of the command from the failing spot; a long rest is cut.
    rest = text[position:]
    if len(rest) > _QUOTE_LIMIT:
        rest = rest[:_QUOTE_LIMIT] + "..."
    return ExprError(f"{kind} error at '{rest}'", position)


# --------------------------------------------------------------------------- context


class ExprContext(Protocol):
    def symbol(self, name: str) -> int | None:
        """Address of ``module!Name``, ``!Name`` or a bare ``Name``; None if unknown."""

    def register(self, name: str) -> int | None:
        """Value of a register or pseudo-register (lower case, without '@'); None if unknown."""

    def read_memory(self, address: int, size: int) -> bytes:
        """``size`` bytes at ``address``; raises MemoryAccessError if unreadable."""


USER_REGISTER_COUNT = 20


class UserRegisters:
    """The user pseudo-registers ``$t0`` .. ``$t19``; all start at zero."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values = [0] * USER_REGISTER_COUNT

    @staticmethod
    def index_of(name: str) -> int | None:
        """Index for ``$tN`` / ``@$tN`` (any case), or None if not a user register."""
        key = name.lower().lstrip("@")
        if not key.startswith("$t") or not key[2:].isdigit() or len(key) > 4:
            return None
        index = int(key[2:])
        if key[2:] != str(index) or index >= USER_REGISTER_COUNT:
            return None
        return index

    def get(self, name: str) -> int | None:
        index = self.index_of(name)
        return None if index is None else self._values[index]

    def set(self, name: str, value: int) -> None:
        index = self.index_of(name)
        if index is None:
            raise ExprError(f"Bad register error at '{name}'", 0)
        self._values[index] = value & MASK64

    def items(self) -> list[tuple[str, int]]:
        return [(f"$t{i}", v) for i, v in enumerate(self._values)]


@dataclass(slots=True)
class SimpleContext:
    """A dictionary-backed context for tests and for commands without a target.

    ``memory`` maps region start addresses to their bytes. Symbol lookup ignores
    case, and a name without a module matches ``Name`` in any module.
    """

    symbols: dict[str, int] = field(default_factory=dict)
    registers: dict[str, int] = field(default_factory=dict)
    memory: dict[int, bytes] = field(default_factory=dict)
    user: UserRegisters = field(default_factory=UserRegisters)

    def symbol(self, name: str) -> int | None:
        wanted = name.lower()
        bare = wanted[1:] if wanted.startswith("!") else wanted
        for key, value in self.symbols.items():
            lowered = key.lower()
            if lowered == wanted:
                return value
            if "!" not in bare and lowered.rpartition("!")[2] == bare:
                return value
        return None

    def register(self, name: str) -> int | None:
        user_value = self.user.get(name)
        if user_value is not None:
            return user_value
        lowered = name.lower()
        for key, value in self.registers.items():
            if key.lower().lstrip("@") == lowered:
                return value
        return None

    def read_memory(self, address: int, size: int) -> bytes:
        for start, blob in self.memory.items():
            offset = address - start
            if 0 <= offset and offset + size <= len(blob):
                return bytes(blob[offset : offset + size])
        raise MemoryAccessError(address, size)


# --------------------------------------------------------------------------- AST


@dataclass(slots=True, frozen=True)
class Number:
    value: int
    grave: bool  # written with a backtick: never sign-extended
    start: int
    end: int


@dataclass(slots=True, frozen=True)
class Symbol:
    name: str  # "module!Name", "!Name" or a bare "Name" (may also be a register)
    start: int
    end: int


@dataclass(slots=True, frozen=True)
class Register:
    name: str  # lower case, without '@': "rip", "$irql", "$t0"
    start: int
    end: int


@dataclass(slots=True, frozen=True)
class Group:
    inner: "Expr"
    start: int
    end: int


@dataclass(slots=True, frozen=True)
class Unary:
    op: str  # '+', '-', '~', '!', 'hi', 'low', 'by', 'wo', 'dwo', 'qwo', 'poi'
    operand: "Expr"
    start: int
    end: int


@dataclass(slots=True, frozen=True)
class Binary:
    op: str  # canonical: '*', '/', '%', '+', '-', '<<', '>>', '>>>', '==', '!=', '<', '>', '<=', '>=', '&', '^', '|'
    left: "Expr"
    right: "Expr"
    start: int
    end: int


Expr = Union[Number, Symbol, Register, Group, Unary, Binary]


# --------------------------------------------------------------------------- lexer


@dataclass(slots=True, frozen=True)
class _Token:
    kind: str  # 'num', 'sym', 'reg', 'op', 'fn', '(', ')', 'end', 'bad'
    text: str
    start: int
    end: int
    value: int = 0
    grave: bool = False


_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_`")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$@?")
_REG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_KEYWORD_OPS = {"mod": "%", "and": "&", "xor": "^", "or": "|", "not": "!"}
_FUNCTIONS = frozenset({"hi", "low", "by", "wo", "dwo", "qwo", "poi"})
_SYMBOL_OPS = (">>>", ">>", "<<", "<=", ">=", "==", "!=", "=", "<", ">",
               "+", "-", "*", "/", "%", "&", "^", "|", "~")
_PREFIX_BASES = {"0x": 16, "0n": 10, "0t": 8, "0y": 2}
_DIGITS = "0123456789abcdef"


def parse_number(word: str, radix: int = 16) -> tuple[int, bool] | None:
    """Value and backtick flag of a MASM number, or None if ``word`` is not one.

    Values wider than 64 bits are returned as they are; the caller decides.
    """
    if not word or word[0] == "`" or word[-1] == "`" or "``" in word:
        return None
    grave = "`" in word
    digits = word.replace("`", "").lower()
    base = radix
    prefix = digits[:2]
    if prefix in _PREFIX_BASES:
        base, digits = _PREFIX_BASES[prefix], digits[2:]
        if not digits:
            return None  # "0x" alone is not a number (WinDbg: a syntax error)
    elif len(digits) > 1 and digits.endswith("h") and all(c in _DIGITS for c in digits[:-1]):
        base, digits = 16, digits[:-1]
    allowed = _DIGITS[:base]
    if not digits or any(c not in allowed for c in digits):
        return None
    return int(digits, base), grave


class _Lexer:
    """Produces tokens on demand, so a range parser can stop mid-text."""

    __slots__ = ("text", "radix")

    def __init__(self, text: str, radix: int) -> None:
        self.text = text
        self.radix = radix

    def skip_space(self, pos: int) -> int:
        text = self.text
        while pos < len(text) and text[pos].isspace():
            pos += 1
        return pos

    def token_at(self, pos: int) -> _Token:
        text = self.text
        pos = self.skip_space(pos)
        if pos >= len(text):
            return _Token("end", "", pos, pos)
        ch = text[pos]
        if ch in "()":
            return _Token(ch, ch, pos, pos + 1)
        if ch == "@":
            return self._register(pos, pos + 1)
        if ch == "$":
            return self._register(pos, pos)
        if ch == ".":
            return _Token("reg", "$ip", pos, pos + 1)
        if ch == "!":
            nxt = text[pos + 1 : pos + 2]
            if nxt == "=":
                return _Token("op", "!=", pos, pos + 2)
            if nxt and nxt in _NAME_START:
                end = self._scan_name(pos + 1)
                return _Token("sym", text[pos:end], pos, end)
            return _Token("op", "!", pos, pos + 1)
        if ch in _WORD_CHARS:
            return self._word(pos)
        for op in _SYMBOL_OPS:
            if text.startswith(op, pos):
                canonical = "==" if op == "=" else op
                return _Token("op", canonical, pos, pos + len(op))
        raise _error("Syntax", text, pos)

    def _scan_name(self, pos: int) -> int:
        text = self.text
        while pos < len(text):
            if text[pos] in _NAME_CHARS:
                pos += 1
            elif text.startswith("::", pos):
                pos += 2
            else:
                break
        return pos

    def _register(self, start: int, name_start: int) -> _Token:
        text = self.text
        pos = name_start
        if text[pos : pos + 1] == "$":
            pos += 1
        body = pos
        while pos < len(text) and text[pos] in _REG_CHARS:
            pos += 1
        if pos == body:
            raise _error("Syntax", text, start)
        return _Token("reg", text[name_start:pos].lower(), start, pos)

    def _word(self, start: int) -> _Token:
        text = self.text
        pos = start
        while pos < len(text) and text[pos] in _WORD_CHARS:
            pos += 1
        word = text[start:pos]
        # module!Name: the '!' must be followed by a name, else it is an operator.
        if text[pos : pos + 1] == "!" and text[pos + 1 : pos + 2] in _NAME_START:
            if "`" in word:
                raise _error("Syntax", text, start)
            end = self._scan_name(pos + 1)
            return _Token("sym", text[start:end], start, end)
        lowered = word.lower()
        if lowered in _KEYWORD_OPS:
            return _Token("op", _KEYWORD_OPS[lowered], start, pos)
        if lowered in _FUNCTIONS:
            return _Token("fn", lowered, start, pos)
        number = parse_number(word, self.radix)
        if number is not None:
            value, grave = number
            if value > MASK64:
                raise _error("Numeric overflow", text, start)
            return _Token("num", word, start, pos, value, grave)
        if word[0].isdigit() or "`" in word:
            raise _error("Syntax", text, start)
        return _Token("sym", word, start, pos)


# --------------------------------------------------------------------------- parser

_BINARY_PRECEDENCE = {
    "|": 1,
    "^": 2,
    "&": 3,
    "==": 4, "!=": 4, "<": 4, ">": 4, "<=": 4, ">=": 4,
    "<<": 5, ">>": 5, ">>>": 5,
    "+": 6, "-": 6,
    "*": 7, "/": 7, "%": 7,
}
_UNARY_OPS = frozenset({"+", "-", "~", "!"})


class _Parser:
    __slots__ = ("lexer", "text", "_token", "_lex_error", "_depth")

    def __init__(self, text: str, radix: int, pos: int) -> None:
        if radix not in (2, 8, 10, 16):
            raise ExprError(f"Bad radix {radix}", 0)
        if len(text) > MAX_EXPRESSION_LENGTH:
            raise ExprError(
                f"Expression too long: {len(text)} characters (the limit is {MAX_EXPRESSION_LENGTH})", 0
            )
        self.text = text
        self.lexer = _Lexer(text, radix)
        self._depth = 0
        self._lex_error: ExprError | None = None
        self._token = self._lex(pos)

    def _lex(self, pos: int) -> _Token:
        # A token that fails to lex only matters if the parser needs it; a range
        # parser may stop before it ("addr L?10").
        try:
            self._lex_error = None
            return self.lexer.token_at(pos)
        except ExprError as exc:
            self._lex_error = exc
            return _Token("bad", "", exc.position, exc.position)

    @property
    def peek(self) -> _Token:
        return self._token

    def _advance(self) -> _Token:
        token = self._token
        if token.kind == "bad":
            assert self._lex_error is not None
            raise self._lex_error
        self._token = self._lex(token.end)
        return token

    def fail_here(self) -> ExprError:
        token = self._token
        if token.kind == "bad" and self._lex_error is not None:
            return self._lex_error
        return _error("Syntax", self.text, token.start)

    def expression(self, min_precedence: int = 1) -> Expr:
        left = self._unary()
        while True:
            token = self._token
            precedence = _BINARY_PRECEDENCE.get(token.text) if token.kind == "op" else None
            if precedence is None or precedence < min_precedence:
                return left
            self._advance()
            # Only the right operand recurses; a left-deep chain loops here.
            self._enter()
            right = self.expression(precedence + 1)
            self._depth -= 1
            left = Binary(token.text, left, right, left.start, right.end)

    def _unary(self) -> Expr:
        token = self._token
        is_unary = (token.kind == "op" and token.text in _UNARY_OPS) or token.kind == "fn"
        if not is_unary:
            return self._primary()
        self._enter()
        self._advance()
        operand = self._unary()
        self._depth -= 1
        return Unary(token.text, operand, token.start, operand.end)

    def _primary(self) -> Expr:
        token = self._token
        if token.kind == "num":
            self._advance()
            return Number(token.value, token.grave, token.start, token.end)
        if token.kind == "sym":
            self._advance()
            return Symbol(token.text, token.start, token.end)
        if token.kind == "reg":
            self._advance()
            return Register(token.text, token.start, token.end)
        if token.kind == "(":
            self._enter()
            self._advance()
            inner = self.expression()
            if self._token.kind != ")":
                raise self.fail_here()
            close = self._advance()
            self._depth -= 1
            return Group(inner, token.start, close.end)
        raise self.fail_here()

    def _enter(self) -> None:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise _error("Expression too deeply nested", self.text, self._token.start)


def parse(text: str, radix: int = 16) -> Expr:
    """Parse a whole MASM expression into an AST; raises ExprError."""
    parser = _Parser(text, radix, 0)
    node = parser.expression()
    if parser.peek.kind != "end":
        raise parser.fail_here()
    return node


def _parse_prefix(text: str, radix: int, pos: int) -> tuple[Expr, int]:
    """Parse the longest expression starting at ``pos``; returns it and where the rest starts."""
    parser = _Parser(text, radix, pos)
    node = parser.expression()
    return node, parser.peek.start


# --------------------------------------------------------------------------- evaluation

_READ_SIZES = {"by": 1, "wo": 2, "dwo": 4, "qwo": 8}


def to_signed64(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value & _SIGN_BIT else value


def _sign_extend_constant(node: Number) -> int:
    if not node.grave and 0x80000000 <= node.value <= 0xFFFFFFFF:
        return node.value | 0xFFFFFFFF00000000
    return node.value


class _Evaluator:
    __slots__ = ("ctx", "text", "pointer_size", "sign_extend")

    def __init__(self, ctx: ExprContext, text: str, pointer_size: int, sign_extend: bool) -> None:
        self.ctx = ctx
        self.text = text
        self.pointer_size = pointer_size
        self.sign_extend = sign_extend

    def value(self, node: Expr) -> int:
        if isinstance(node, Number):
            return _sign_extend_constant(node) if self.sign_extend else node.value
        if isinstance(node, Group):
            return self.value(node.inner)
        if isinstance(node, Symbol):
            return self._symbol(node)
        if isinstance(node, Register):
            found = self.ctx.register(node.name)
            if found is None:
                raise _error("Bad register", self.text, node.start)
            return found & MASK64
        if isinstance(node, Unary):
            return self._unary(node)
        return self._binary(node)

    def _symbol(self, node: Symbol) -> int:
        found = self.ctx.symbol(node.name)
        if found is None and "!" not in node.name:
            # Bare words: number (already tried by the lexer), symbol, then register.
            found = self.ctx.register(node.name.lower())
        if found is None:
            raise _error("Couldn't resolve", self.text, node.start)
        return found & MASK64

    def _unary(self, node: Unary) -> int:
        operand = self.value(node.operand)
        op = node.op
        if op == "+":
            return operand
        if op == "-":
            return -operand & MASK64
        if op == "~":
            return ~operand & MASK64
        if op == "!":
            return int(operand == 0)
        if op == "hi":
            return (operand >> 16) & 0xFFFF
        if op == "low":
            return operand & 0xFFFF
        size = self.pointer_size if op == "poi" else _READ_SIZES[op]
        return self._read(node.operand, operand, size)

    def _read(self, operand_node: Expr, address: int, size: int) -> int:
        # WinDbg points at the operand's last token: "Memory access error at ')'".
        where = operand_node.end - 1 if isinstance(operand_node, Group) else operand_node.start
        if address + size > MASK64 + 1:
            raise _error("Memory access", self.text, where)
        try:
            data = self.ctx.read_memory(address, size)
        except MemoryAccessError:
            raise _error("Memory access", self.text, where) from None
        if len(data) != size:
            raise _error("Memory access", self.text, where)
        return int.from_bytes(data, "little")

    def _binary(self, node: Binary) -> int:
        # "1+1+...+1" parses into a left-deep tree as tall as the chain is long, so
        # walk the left spine with a loop instead of recursing down it.
        spine: list[Binary] = []
        current: Expr = node
        while isinstance(current, Binary):
            spine.append(current)
            current = current.left
        accumulated = self.value(current)
        for binary in reversed(spine):
            accumulated = self._apply(binary, accumulated, self.value(binary.right))
        return accumulated

    def _apply(self, node: Binary, left: int, right: int) -> int:
        op = node.op
        if op == "+":
            return (left + right) & MASK64
        if op == "-":
            return (left - right) & MASK64
        if op == "*":
            return (left * right) & MASK64
        if op in ("/", "%"):
            if right == 0:
                raise _error("Divide by zero", self.text, node.right.start)
            return left // right if op == "/" else left % right
        if op == "<<":
            return (left << right) & MASK64 if right < 64 else 0
        if op == ">>":
            return left >> right if right < 64 else 0
        if op == ">>>":
            return (to_signed64(left) >> min(right, 63)) & MASK64
        if op == "&":
            return left & right
        if op == "^":
            return left ^ right
        if op == "|":
            return left | right
        return int(_COMPARE[op](left, right))


_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def evaluate_ast(
    node: Expr,
    text: str,
    ctx: ExprContext,
    *,
    pointer_size: int = 8,
    sign_extend: bool = True,
) -> int:
    """Evaluate a parsed expression; ``text`` is the source, for error messages."""
    return _Evaluator(ctx, text, pointer_size, sign_extend).value(node)


def evaluate(
    text: str,
    ctx: ExprContext,
    radix: int = 16,
    *,
    pointer_size: int = 8,
    sign_extend: bool = True,
) -> int:
    """Evaluate a MASM expression to an unsigned 64-bit value; raises ExprError.

    ``sign_extend`` follows kernel-mode WinDbg (constants 0x80000000..0xffffffff
    without a backtick become ffffffff`xxxxxxxx); pass False for user-mode rules.
    """
    node = parse(text, radix)
    return evaluate_ast(node, text, ctx, pointer_size=pointer_size, sign_extend=sign_extend)


def format_evaluate(value: int) -> str:
    """``Evaluate expression: 16 = 00000000`00000010`` (signed decimal, 64-bit hex)."""
    value &= MASK64
    return f"Evaluate expression: {to_signed64(value)} = {value >> 32:08x}`{value & 0xFFFFFFFF:08x}"


# --------------------------------------------------------------------------- ranges


def parse_address_range(
    text: str,
    ctx: ExprContext,
    default_length: int,
    unit: int,
    *,
    radix: int = 16,
    pointer_size: int = 8,
    sign_extend: bool = True,
) -> tuple[int, int]:
    """Parse a WinDbg range; returns ``(start, count)`` with ``count`` in units.

    Forms: ``addr`` (``default_length`` bytes), ``addr L count``, ``addr L?count``
    (no 256 MB limit), ``addr L-count`` (the range ends at addr), ``addr end``
    (inclusive of the byte at ``end``).
    """
    if unit <= 0:
        raise ValueError("unit must be positive")

    def value_of(node: Expr) -> int:
        return evaluate_ast(node, text, ctx, pointer_size=pointer_size, sign_extend=sign_extend)

    def whole_expression(pos: int) -> Expr:
        node, rest = _parse_prefix(text, radix, pos)
        if rest < len(text):
            raise _error("Syntax", text, rest)
        return node

    start_node, rest = _parse_prefix(text, radix, 0)
    start = value_of(start_node)
    if rest >= len(text):
        return start, max(1, default_length // unit)

    unlimited = False
    if text[rest] in "lL":
        pos = rest + 1
        backwards = False
        if text[pos : pos + 1] == "?":
            unlimited, pos = True, pos + 1
        elif text[pos : pos + 1] == "-":
            backwards, pos = True, pos + 1
        count = value_of(whole_expression(pos))
        if backwards:
            start = (start - count * unit) & MASK64
    else:
        end = value_of(whole_expression(rest))
        if end < start:
            raise _error("Range", text, rest)
        count = (end - start) // unit + 1
    if count * unit > RANGE_LIMIT_BYTES and not unlimited:
        raise _error("Range", text, rest)
    return start, count
