"""`dx`: typed expressions over emulated memory, in the shape of WinDbg's data model display.

    dx ((nt!_IRP*)0xffffc10a3b2f0000)->Tail.Overlay.CurrentStackLocation
    dx -r2 *(nt!_MDL*)@$t0
    dx ((nt!_DRIVER_OBJECT*)0x...)->MajorFunction[14]
    dx -r2 Debugger.Utility.Collections.FromListEntry(*(nt!_LIST_ENTRY*)@$t1, "nt!_MYTYPE", "Links")

A small C++-expression parser (casts, ->, ., [], unary * and &, + and - with pointer scaling,
numbers in C++ radix: decimal unless 0x), never Python's eval.  Types are the structure layouts
`dt` uses (stack.kernel.layouts); registers and symbols resolve through the MASM evaluator's
context (wskdbg.expr), so `@$t0`, `@rcx`, `@$curthread` and `module!Name` work as in `?`.

Display: `Name : value [Type: T]` rows; structure members as `[+0x008] MdlAddress       : 0x0
[Type: _MDL *]` (names padded to 16); signed integers in decimal, unsigned and pointers in hex
without a backtick; `-r N` expands N levels (default 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from stack.kernel.layouts import LAYOUTS, Field, StructLayout, find_layout

MASK64 = (1 << 64) - 1
NAME_WIDTH = 16
MAX_RECURSION = 8
MAX_CHILDREN = 100  # rows shown per collection before `[...]`
MAX_LIST = 1000  # a list walk longer than this stops (a corrupt or circular list)

_SCALARS = {  # field kind -> (dx type name, size, signed)
    "i8": ("char", 1, True), "char": ("char", 1, True), "u8": ("unsigned char", 1, False),
    "i16": ("short", 2, True), "u16": ("unsigned short", 2, False),
    "i32": ("long", 4, True), "u32": ("unsigned long", 4, False),
    "i64": ("__int64", 8, True), "u64": ("unsigned __int64", 8, False),
}
_BUILTIN_NAMES = {name: kind for kind, (name, _, _) in _SCALARS.items() if kind != "i8"}
_BUILTIN_NAMES.update({"int": "i32", "unsigned int": "u32", "UCHAR": "u8", "USHORT": "u16", "ULONG": "u32",
                       "LONG": "i32", "ULONG64": "u64", "ULONG_PTR": "u64", "SHORT": "i16", "CHAR": "char"})
# Union members the layouts fold into their parent (Tail.Overlay, Parameters.Others).
_UNION_ALIASES = {("_IRP_TAIL", "overlay"), ("_IO_STACK_PARAMETERS_OTHERS", "others")}
_LIST_ENTRY = StructLayout("_LIST_ENTRY", 0x10, [Field("Flink", 0, "ptr", "_LIST_ENTRY"),
                                                 Field("Blink", 8, "ptr", "_LIST_ENTRY")])


class DxError(Exception):
    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


# --- types and values ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DxType:
    kind: str  # scalar, void, struct, ptr, array
    name: str = ""  # scalar: field kind; struct: layout name
    target: "DxType | None" = None  # ptr / array element
    count: int = 0

    @property
    def size(self) -> int:
        if self.kind == "scalar":
            return _SCALARS[self.name][1]
        if self.kind == "ptr":
            return 8
        if self.kind == "struct":
            layout = layout_of(self.name)
            return layout.size if layout else 0
        if self.kind == "array":
            return self.count * (self.target.size if self.target else 1)
        return 1  # void: byte arithmetic

    def text(self) -> str:
        if self.kind == "scalar":
            return _SCALARS[self.name][0]
        if self.kind == "void":
            return "void"
        if self.kind == "struct":
            return self.name
        if self.kind == "ptr":
            assert self.target is not None
            return f"{self.target.text()} *"
        assert self.target is not None
        return f"{self.target.text()} [{self.count}]"


VOID = DxType("void")
U64 = DxType("scalar", "u64")


def layout_of(name: str) -> StructLayout | None:
    if name.lstrip("_").lower() == "list_entry":
        return LAYOUTS.get("_LIST_ENTRY", _LIST_ENTRY)
    return find_layout(name)


def type_named(name: str) -> DxType | None:
    """`nt!_IRP`, `_MDL`, `unsigned long`, `Void` -> a type; None if unknown."""
    bare = name.split("!", 1)[-1].strip()
    if bare.lower() in ("void", "") or bare == "Void":
        return VOID
    if bare in _BUILTIN_NAMES:
        return DxType("scalar", _BUILTIN_NAMES[bare])
    if bare in ("Char", "UChar"):
        return DxType("scalar", "char" if bare == "Char" else "u8")
    layout = layout_of(bare)
    if layout is not None:
        return DxType("struct", layout.name)
    return None


def field_type(f: Field) -> DxType:
    if f.kind == "ptr":
        target = type_named(f.target or "Void") or DxType("struct", f.target)
        t = DxType("ptr", target=target)
    elif f.kind in _SCALARS:
        t = DxType("scalar", f.kind)
    elif f.kind in ("struct", "union"):  # an embedded union expands like a structure (<unnamed-tag>)
        t = DxType("struct", f.target)
    elif f.size == 0x10 and ("ListEntry" in f.name or "ListHead" in f.name):
        return DxType("struct", "_LIST_ENTRY")
    else:
        return DxType("array", target=DxType("scalar", "u8"), count=f.size)
    return DxType("array", target=t, count=f.count) if f.count > 1 else t


@dataclass(slots=True)
class DxValue:
    type: DxType
    address: int | None = None  # where it lives (None: a computed value)
    value: int = 0  # scalars and pointers (read when address is set)
    items: list["DxValue"] | None = None  # a synthetic collection (FromListEntry)
    label: str = ""  # a collection's element type, for display


# --- the parser ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"[^"]*")
  | (?P<num>0[xX][0-9a-fA-F`]+|\d+)
  | (?P<reg>@\$?[A-Za-z_][A-Za-z0-9_]*|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:![A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<op>->|==|!=|[-+*&()\[\].,])
""", re.VERBOSE)


@dataclass(slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[_Tok]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise DxError(f"Syntax error at '{text[pos:]}'", pos)
        if m.lastgroup != "ws":
            out.append(_Tok(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


@dataclass(slots=True)
class Env:
    """What an expression can see: memory, registers and symbols (the MASM context)."""

    read: Callable[[int, int], bytes | None]
    register: Callable[[str], int | None]
    symbol: Callable[[str], int | None]
    symbolize: Callable[[int], str | None] = lambda _a: None


class _Parser:
    def __init__(self, text: str, env: Env) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.env = env

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> _Tok:
        t = self.tok
        if text is not None and t.text != text:
            raise DxError(f"expected '{text}' at '{self.text[t.pos:]}'", t.pos)
        self.i += 1
        return t

    def parse(self) -> DxValue:
        v = self.additive()
        if self.tok.kind != "end":
            raise DxError(f"Syntax error at '{self.text[self.tok.pos:]}'", self.tok.pos)
        return v

    def additive(self) -> DxValue:
        left = self.unary()
        while self.tok.text in ("+", "-"):
            op = self.take().text
            right = self.unary()
            left = self._arith(op, left, right)
        return left

    def _arith(self, op: str, left: DxValue, right: DxValue) -> DxValue:
        r = self._number(right)
        if left.type.kind == "ptr":
            assert left.type.target is not None
            step = left.type.target.size or 1
            value = left.value + r * step if op == "+" else left.value - r * step
            return DxValue(left.type, None, value & MASK64)
        lv = self._number(left)
        return DxValue(U64, None, (lv + r if op == "+" else lv - r) & MASK64)

    def _number(self, v: DxValue) -> int:
        if v.type.kind in ("scalar", "ptr"):
            return v.value
        if v.type.kind == "array" and v.address is not None:
            return v.address
        raise DxError(f"a {v.type.text()} is not a number", self.tok.pos)

    def unary(self) -> DxValue:
        t = self.tok
        if t.text == "*":
            self.take()
            return self.deref(self.unary(), t.pos)
        if t.text == "&":
            self.take()
            v = self.unary()
            if v.address is None:
                raise DxError("& needs something that lives in memory", t.pos)
            return DxValue(DxType("ptr", target=v.type), None, v.address)
        if t.text == "-":
            self.take()
            return DxValue(U64, None, -self._number(self.unary()) & MASK64)
        if t.text == "(":
            cast = self._cast_type()
            if cast is not None:
                v = self.unary()
                return self.cast(cast, v)
        return self.postfix(self.primary())

    def _cast_type(self) -> DxType | None:
        """`(nt!_IRP*)`, `(_MDL **)`, `(unsigned long)`: a type in parentheses, or None."""
        j = self.i + 1
        words = []
        while self.toks[j].kind == "name":
            words.append(self.toks[j].text)
            j += 1
        if not words:
            return None
        base = type_named(" ".join(words))
        if base is None:
            return None
        stars = 0
        while self.toks[j].text == "*":
            stars += 1
            j += 1
        if self.toks[j].text != ")":
            return None
        self.i = j + 1
        for _ in range(stars):
            base = DxType("ptr", target=base)
        return base

    def cast(self, t: DxType, v: DxValue) -> DxValue:
        if t.kind == "struct":
            if v.address is None:
                raise DxError(f"cannot cast a number to {t.text()} (cast to a pointer and dereference)", 0)
            return DxValue(t, v.address)
        return DxValue(t, None, self._number(v) & ((1 << (8 * t.size)) - 1 if t.kind == "scalar" else MASK64))

    def primary(self) -> DxValue:
        t = self.tok
        if t.kind == "num":
            self.take()
            return DxValue(U64, None, int(t.text.replace("`", ""), 0) if t.text.lower().startswith("0x")
                           else int(t.text, 10))
        if t.kind == "reg":
            self.take()
            name = t.text.lstrip("@").lower()
            value = self.env.register(name)
            if value is None:
                raise DxError(f"Bad register error at '{t.text}'", t.pos)
            return DxValue(U64, None, value & MASK64)
        if t.text == "(":
            self.take()
            v = self.additive()
            self.take(")")
            return v
        if t.kind == "name":
            if t.text == "Debugger":
                return self._debugger_object()
            self.take()
            address = self.env.symbol(t.text)
            if address is None:
                raise DxError(f"Couldn't resolve error at '{t.text}'", t.pos)
            return DxValue(U64, None, address)
        raise DxError(f"Syntax error at '{self.text[t.pos:]}'", t.pos)

    def postfix(self, v: DxValue) -> DxValue:
        while True:
            t = self.tok
            if t.text in ("->", "."):
                self.take()
                name = self.take()
                if name.kind != "name":
                    raise DxError(f"a field name is expected at '{self.text[name.pos:]}'", name.pos)
                if t.text == "->":
                    v = self.deref(v, t.pos)
                elif v.type.kind == "ptr":  # dx lets . follow a pointer, as the data model does
                    v = self.deref(v, t.pos)
                v = self.member(v, name)
            elif t.text == "[":
                self.take()
                index = self._number(self.additive())
                self.take("]")
                v = self.index(v, index, t.pos)
            else:
                return v

    def deref(self, v: DxValue, pos: int) -> DxValue:
        if v.type.kind != "ptr":
            raise DxError(f"cannot dereference a {v.type.text()} (cast it to a pointer type first)", pos)
        target = v.type.target
        assert target is not None
        if target.kind == "void":
            raise DxError("cannot dereference a void * (cast it first)", pos)
        return load(DxValue(target, v.value), self.env)

    def member(self, v: DxValue, name: _Tok) -> DxValue:
        if v.type.kind != "struct" or v.address is None:
            raise DxError(f"{v.type.text()} has no field '{name.text}'", name.pos)
        layout = layout_of(v.type.name)
        if layout is None:
            raise DxError(f"no layout for {v.type.name}", name.pos)
        f = next((f for f in layout.fields if f.name.lower() == name.text.lower()), None)
        if f is None:
            if (layout.name, name.text.lower()) in _UNION_ALIASES:
                return v
            raise DxError(f"{layout.name} has no field '{name.text}'", name.pos)
        return load(DxValue(field_type(f), v.address + f.offset), self.env)

    def index(self, v: DxValue, i: int, pos: int) -> DxValue:
        if v.type.kind == "array" and v.address is not None:
            if i >= v.type.count:
                raise DxError(f"index {i} is past the end of {v.type.text()}", pos)
            el = v.type.target
            assert el is not None
            return load(DxValue(el, v.address + i * el.size), self.env)
        if v.type.kind == "ptr":
            el = v.type.target
            assert el is not None
            return load(DxValue(el, v.value + i * (el.size or 1)), self.env)
        if v.items is not None:
            if i >= len(v.items):
                raise DxError(f"index {i} is past the end of the list ({len(v.items)} entries)", pos)
            return v.items[i]
        raise DxError(f"cannot index a {v.type.text()}", pos)

    def _debugger_object(self) -> DxValue:
        start = self.tok.pos
        path = []
        while True:
            t = self.take()
            if t.kind != "name":
                raise DxError(f"Syntax error at '{self.text[t.pos:]}'", t.pos)
            path.append(t.text)
            if self.tok.text != ".":
                break
            self.take()
        if ".".join(path) != "Debugger.Utility.Collections.FromListEntry":
            raise DxError(f"{'.'.join(path)} is not available (Debugger.Utility.Collections.FromListEntry is)",
                          start)
        self.take("(")
        head = self.additive()
        self.take(",")
        type_tok = self.take()
        self.take(",")
        field_tok = self.take()
        self.take(")")
        if type_tok.kind != "str" or field_tok.kind != "str":
            raise DxError('FromListEntry(ListHead, "module!Type", "FieldName") takes two quoted names', type_tok.pos)
        return from_list_entry(head, type_tok.text.strip('"'), field_tok.text.strip('"'), self.env, type_tok.pos)


def load(v: DxValue, env: Env) -> DxValue:
    """Read a scalar's or pointer's bytes (structures and arrays stay where they are)."""
    if v.address is None or v.type.kind not in ("scalar", "ptr"):
        return v
    size = v.type.size
    data = env.read(v.address, size)
    if data is None:
        raise DxError(f"Unable to read memory at Address 0x{v.address:x}")
    value = int.from_bytes(data, "little")
    if v.type.kind == "scalar" and _SCALARS[v.type.name][2] and value >> (8 * size - 1):
        value -= 1 << (8 * size)
    return DxValue(v.type, v.address, value)


def from_list_entry(head: DxValue, type_name: str, field_name: str, env: Env, pos: int) -> DxValue:
    """The entries of a LIST_ENTRY ring as `type_name` structures (CONTAINING_RECORD)."""
    t = type_named(type_name)
    if t is None or t.kind != "struct":
        raise DxError(f"Unknown type {type_name}", pos)
    layout = layout_of(t.name)
    assert layout is not None
    f = next((f for f in layout.fields if f.name.lower() == field_name.lower()), None)
    if f is None:
        raise DxError(f"{layout.name} has no field '{field_name}'", pos)
    if head.type.kind == "ptr":
        head_address = head.value
    elif head.address is not None:
        head_address = head.address
    else:
        head_address = head.value
    items = []
    entry = _read_ptr(env, head_address)
    while entry != head_address:
        if len(items) >= MAX_LIST:
            raise DxError(f"the list has more than {MAX_LIST} entries (is it corrupt?)", pos)
        items.append(DxValue(t, entry - f.offset))
        entry = _read_ptr(env, entry)
    return DxValue(DxType("array", target=t, count=len(items)), None, items=items, label=t.text())


def _read_ptr(env: Env, address: int) -> int:
    data = env.read(address, 8)
    if data is None:
        raise DxError(f"Unable to read memory at Address 0x{address:x}")
    return int.from_bytes(data, "little")


def evaluate(text: str, env: Env) -> DxValue:
    return _Parser(text, env).parse()


# --- display ------------------------------------------------------------------------------------

def _scalar_text(v: DxValue) -> str:
    return str(v.value) if _SCALARS[v.type.name][2] else f"{v.value:#x}"


def _pointer_text(v: DxValue, env: Env) -> str:
    text = f"{v.value:#x}"
    if v.value and v.type.target is not None and v.type.target.kind == "void":
        sym = env.symbolize(v.value)
        if sym:
            text += f" : {sym if '+' in sym else sym + '+0x0'}"
    return text


def _row(name: str, v: DxValue, env: Env, top: bool = False) -> str:
    """A member row pads its name to 16 columns; the expression's own row is followed by 16
    spaces (`(*((nt!_EPROCESS *)0xffffb607560b56c0))                 [Type: _EPROCESS]`)."""
    name = name + " " * NAME_WIDTH if top else f"{name:<{NAME_WIDTH}}"
    if v.items is not None:
        return f"{name} [Type: {v.label} [{len(v.items)}]]"
    tname = v.type.text()
    if v.type.kind == "scalar":
        return f"{name} : {_scalar_text(v)} [Type: {tname}]"
    if v.type.kind == "ptr":
        return f"{name} : {_pointer_text(v, env)} [Type: {tname}]"
    return f"{name} [Type: {tname}]"


def children(v: DxValue, env: Env) -> list[tuple[str, DxValue]]:
    """What expanding a value shows: members, elements, or a pointer's pointee's members."""
    if v.items is not None:
        return [(f"[{i:#x}]", item) for i, item in enumerate(v.items)]
    if v.type.kind == "ptr" and v.value and v.type.target is not None and v.type.target.kind == "struct":
        return children(DxValue(v.type.target, v.value), env)
    if v.type.kind == "struct" and v.address is not None:
        layout = layout_of(v.type.name)
        if layout is None:
            return []
        return [(f"[+0x{f.offset:03x}] {f.name:<{NAME_WIDTH}}", load(DxValue(field_type(f), v.address + f.offset), env))
                for f in layout.fields]
    if v.type.kind == "array" and v.address is not None and v.type.target is not None:
        el = v.type.target
        return [(f"[{i}]", load(DxValue(el, v.address + i * el.size), env)) for i in range(v.type.count)]
    return []


def render(name: str, v: DxValue, env: Env, recurse: int = 1) -> list[str]:
    """`dx` text: the value's row, then `recurse` levels of children (4 spaces per level)."""
    lines = [_row(name, v, env, top=True)]
    _expand(v, env, recurse, 1, lines)
    return lines


def _expand(v: DxValue, env: Env, levels: int, depth: int, lines: list[str]) -> None:
    if levels <= 0:
        return
    try:
        kids = children(v, env)
    except DxError as exc:
        lines.append("    " * depth + exc.message)
        return
    for i, (name, child) in enumerate(kids):
        if i == MAX_CHILDREN:
            lines.append("    " * depth + "[...]")
            break
        lines.append("    " * depth + _row(name, child, env))
        _expand(child, env, levels - 1, depth + 1, lines)


@dataclass(slots=True)
class DxOptions:
    recurse: int = 1
    expression: str = ""
    offset: int = 0  # where the expression starts in the arguments


def parse_options(args: str) -> DxOptions:
    """`-rN` (expand N levels, default 1, at most MAX_RECURSION), then the expression."""
    opts = DxOptions()
    pos = 0
    while True:
        m = re.match(r"\s*-r(\d*)\s+", args[pos:])
        if m is None:
            break
        if m.group(1):
            opts.recurse = min(int(m.group(1)), MAX_RECURSION)
        pos += m.end()
    rest = args[pos:]
    opts.offset = pos + len(rest) - len(rest.lstrip())
    opts.expression = rest.strip()
    return opts
