"""BabelCode's question schema: typed parameters and return, and test cases, inferred from a Python question.

A question is its reference solution's signature (read with `ast`) and its asserts, `assert f(...) == x`,
`assert not f(...)` or `assert f(...)`, whose arguments and expected values must be literals. Types come
from the literals and the annotations, in BabelCode's grammar (babelcode/schema_parsing/README.md):

    S => leaf | list<S> | set<core> | map<core;S>
    leaf => core | boolean | double | float | long        core => character | integer | string

An integer of more than 9 digits is a long, a float written with 7 or more decimals a double, a
one-character string a character; types met in several places widen (integer -> long, float or double;
float -> double; character -> string). A tuple whose elements share a type becomes a list.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ...errors import CodeGemmaError

LEAVES = ("integer", "long", "float", "double", "boolean", "character", "string")
CORE = ("null", "character", "integer", "string")  # what set elements and map keys may be
WIDER = {("integer", "long"): "long", ("integer", "float"): "float", ("integer", "double"): "double",
         ("float", "double"): "double", ("long", "double"): "double", ("long", "float"): "double",
         ("character", "string"): "string"}
DOUBLE = re.compile(r"\.[0-9]{7,}")  # BabelCode's DOUBLE_REGEX
LONG_DIGITS = 9
ANNOTATIONS = {"int": "integer", "float": "float", "str": "string", "bool": "boolean"}


class SchemaError(CodeGemmaError, ValueError):
    """A question BabelCode's schema cannot express (it is left out, as BabelCode leaves it out)."""


@dataclass(frozen=True)
class Type:
    """A schema type: a leaf name, or list/set/map with element types; "null" is the unknown element type of
    an empty literal (it takes any type)."""

    kind: str
    args: tuple[Type, ...] = ()

    def __str__(self) -> str:
        if not self.args:
            return self.kind
        return f"{self.kind}<{';'.join(map(str, self.args))}>"

    @property
    def complete(self) -> bool:
        return self.kind != "null" and all(a.complete for a in self.args)


NULL = Type("null")


def parse_type(text: str) -> Type:
    """"list<map<string;integer>>" -> Type (the inverse of str)."""
    text = text.strip()
    if "<" not in text:
        return Type(text)
    kind, inner = text[:text.index("<")], text[text.index("<") + 1:-1]
    parts, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        depth += (c == "<") - (c == ">")
        if c == ";" and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    return Type(kind, tuple(parse_type(p) for p in [*parts, inner[start:]]))


def unify(a: Type, b: Type) -> Type:
    """The type both fit in, or SchemaError."""
    if a == b or b.kind == "null":
        return a
    if a.kind == "null":
        return b
    if not a.args and not b.args:
        wider = WIDER.get((a.kind, b.kind)) or WIDER.get((b.kind, a.kind))
        if wider:
            return Type(wider)
    elif a.kind == b.kind and len(a.args) == len(b.args):
        return Type(a.kind, tuple(unify(x, y) for x, y in zip(a.args, b.args)))
    raise SchemaError(f"types {a} and {b} do not unify")


def literal(node: ast.expr, source: str) -> tuple[object, Type]:
    """A literal's Python value and inferred type; anything else (names, calls, arithmetic) is refused."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        value, kind = _constant(node.operand, source)
        return _in_range(-value if isinstance(node.op, ast.USub) else value), kind
    if isinstance(node, ast.Constant):
        value, kind = _constant(node, source)
        return _in_range(value), kind
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [literal(e, source) for e in node.elts]
        element = NULL
        for _, t in items:
            element = unify(element, t)
        kind = "set" if isinstance(node, ast.Set) else "list"
        if kind == "set" and element.kind not in CORE:
            raise SchemaError(f"sets of {element} are not supported (set<character|integer|string> only)")
        values = [v for v, _ in items]
        return (set(values) if kind == "set" else values), Type(kind, (element,))
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise SchemaError("dict unpacking is not a literal")
        keys = [literal(k, source) for k in node.keys]
        values = [literal(v, source) for v in node.values]
        key_type, value_type = NULL, NULL
        for (_, kt), (_, vt) in zip(keys, values):
            key_type, value_type = unify(key_type, kt), unify(value_type, vt)
        if key_type.kind not in CORE:
            raise SchemaError(f"map keys of type {key_type} are not supported")
        return {k: v for (k, _), (v, _) in zip(keys, values)}, Type("map", (key_type, value_type))
    raise SchemaError(f"{type(node).__name__} is not supported")


def _in_range(value: object) -> object:
    if type(value) is int and not -(1 << 63) <= value < 1 << 63:
        raise SchemaError("integers beyond 64 bits are not supported")
    return value


def _constant(node: ast.Constant, source: str) -> tuple[object, Type]:
    value = node.value
    if isinstance(value, bool):
        return value, Type("boolean")
    if isinstance(value, int):
        return value, Type("long" if len(str(abs(value))) > LONG_DIGITS else "integer")
    if isinstance(value, float):
        text = ast.get_source_segment(source, node) or repr(value)
        return value, Type("double" if DOUBLE.search(text) else "float")
    if isinstance(value, str):
        return value, Type("character" if len(value) == 1 else "string")
    if value is None:
        raise SchemaError("None is not supported")
    raise SchemaError(f"{type(value).__name__} literals are not supported")


def annotation(node: ast.expr | None) -> Type | None:
    """The schema type of a Python annotation, or None where it says nothing usable (Any, Optional...)."""
    if node is None:
        return None
    if isinstance(node, ast.Name):
        return Type(ANNOTATIONS[node.id]) if node.id in ANNOTATIONS else None
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        name = node.value.id.lower()
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        inner = [annotation(a) for a in args]
        if any(t is None for t in inner):
            return None
        if name in ("list", "set") and len(inner) == 1:
            return Type(name, (inner[0],))
        if name == "dict" and len(inner) == 2:
            return Type("map", tuple(inner))
        if name == "tuple" and inner and all(t == inner[0] for t in inner):
            return Type("list", (inner[0],))
    return None
