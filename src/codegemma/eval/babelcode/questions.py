"""BabelCode's questions: HumanEval (with BabelCode's fixes) and MBPP, converted to typed schemas."""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass

from ..data import MBPP_TEST_IDS, read_json
from .schema import NULL, SchemaError, Type, annotation, literal, unify


@dataclass(frozen=True)
class TestCase:
    inputs: tuple[object, ...]
    output: object


@dataclass(frozen=True)
class Question:
    task_id: str  # HumanEval/N or MBPP/N, as the Python benchmarks name them
    entry: str  # the Python function name (each language renames it)
    params: tuple[tuple[str, Type], ...]
    returns: Type
    tests: tuple[TestCase, ...]
    text: str  # the problem statement (HumanEval's keeps its doctest examples)
    solution: str  # the Python reference


def convert(row: dict, task_id: str) -> Question:
    """One raw BabelCode question (id, text, solution, testing_code, entry_fn_name) as a typed Question.

    Raises SchemaError where BabelCode's conversion fails too (imports or arithmetic in the tests,
    non-literal arguments, defaults or *args in the signature, types that do not unify)."""
    entry = row["entry_fn_name"]
    fn = _function(row["solution"], entry)
    names = [_name(a.arg, i) for i, a in enumerate(fn.args.args)]
    types: list[Type] = [annotation(a.annotation) or NULL for a in fn.args.args]
    returns = annotation(fn.returns) or NULL
    tests = []
    for call, expected, source in _asserts(row["testing_code"], entry):
        if len(call.args) != len(names) or call.keywords:
            raise SchemaError(f"a test calls {entry} with other arguments than its signature")
        values = [literal(arg, source) for arg in call.args]
        types = [unify(t, v[1]) for t, v in zip(types, values)]
        out, out_type = expected
        returns = unify(returns, out_type)
        tests.append(TestCase(tuple(v[0] for v in values), out))
    if not tests:
        raise SchemaError("no tests")
    if not returns.complete or not all(t.complete for t in types):
        raise SchemaError("a type cannot be inferred (only empty literals)")
    return Question(task_id, entry, tuple(zip(names, types)), returns, tuple(tests), row.get("text", ""),
                    row["solution"])


def _function(solution: str, entry: str) -> ast.FunctionDef:
    try:
        tree = ast.parse(solution)
    except SyntaxError as exc:
        raise SchemaError(f"the solution does not parse ({exc.msg})") from exc
    fn = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == entry), None)
    if fn is None:
        raise SchemaError(f"no function {entry} in the solution")
    a = fn.args
    if a.vararg or a.kwarg or a.kwonlyargs or a.defaults or a.posonlyargs:
        raise SchemaError("defaults, *args and keyword-only arguments are not supported")
    return fn


def _name(arg: str, i: int) -> str:
    name = arg.lower()
    return f"{name}_arg{i}" if keyword.iskeyword(name) or name in RESERVED else name


# Words that are keywords or builtins in one of BabelCode's languages (BabelCode renames such arguments).
RESERVED = set("""
abstract alignas alignof and and_eq as asm assert async auto await base bitand bitor bool boolean box break byte
case catch chan char checked class compl concept const const_cast constexpr continue crate decimal decltype default
defer delegate delete do double dyn else enum event explicit export extends extern false final finally fixed float
fn for foreach friend fun func function go goto if impl implicit import in inline instanceof int interface internal
is let lock long loop map match mod module move mut mutable namespace native new noexcept not not_eq null nullptr
object operator or or_eq out override package params private protected pub public range readonly ref register
reinterpret_cast requires return sbyte sealed select self short signed sizeof stackalloc static static_assert
static_cast strictfp string struct super switch synchronized template this throw throws trait transient true try
type typealias typedef typeid typename typeof uint ulong unchecked union unsafe unsigned use using ushort val var
vector virtual void volatile when where while xor xor_eq yield
""".split())


def _asserts(testing_code: str, entry: str):
    """(call, (expected value, type), source) per assert: `f(...) == x`, `not f(...)` or `f(...)`."""
    try:
        tree = ast.parse(testing_code)
    except SyntaxError as exc:
        raise SchemaError(f"the tests do not parse ({exc.msg})") from exc
    for node in tree.body:  # other top-level statements (a loop of asserts, a stray print) are passed over
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise SchemaError("imports are not supported")
        if not isinstance(node, ast.Assert):
            continue
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            call, expected = test.left, literal(test.comparators[0], testing_code)
        elif isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            call, expected = test.operand, (False, Type("boolean"))
        else:
            call, expected = test, (True, Type("boolean"))
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == entry):
            raise SchemaError(f"{type(call).__name__} is not supported")
        yield call, expected, testing_code


def humaneval() -> tuple[list[Question], dict[str, str]]:
    """BabelCode's HumanEval with its fixes applied: the questions that convert, and why the others do not."""
    fixes = {str(r["id"]): r for r in read_json("babelcode-humaneval-fixes")}
    return _convert_all({**r, **fixes.get(str(r["id"]), {})} for r in read_json("babelcode-humaneval"))


def mbpp() -> tuple[list[Question], dict[str, str]]:
    """MBPP's test split (ids 11-510), converted."""
    rows = [r for r in read_json("mbpp") if int(r["id"]) in MBPP_TEST_IDS]
    return _convert_all({**r, "title": f"MBPP/{r['id']}"} for r in rows)


def _convert_all(rows) -> tuple[list[Question], dict[str, str]]:
    questions, skipped = [], {}
    for row in rows:
        task_id = row.get("title") or str(row["id"])
        try:
            questions.append(convert(row, task_id))
        except SchemaError as exc:
            skipped[task_id] = str(exc)
    return questions, skipped
