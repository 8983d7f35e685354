"""Runs inside the sandbox (not imported by the package): loads solution.py, then each test of tests.json on its
own under a per-test timer, printing one result line per test (prefixed with the run's nonce) to the stdout it
was started with; the learner's own prints are captured per test."""

import ast
import contextlib
import io
import json
import operator
import os
import signal
import sys
import time
import traceback

OPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
       ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
       ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
CFG = json.load(open("tests.json", encoding="utf-8"))
OUT = os.fdopen(os.dup(1), "w", encoding="utf-8")
SOURCE = open("solution.py", encoding="utf-8").read()
LINES = SOURCE.splitlines()


class TestTimeout(BaseException):
    pass


def _alarm(signum, frame):
    raise TestTimeout()


def report(record):
    OUT.write(CFG["nonce"] + json.dumps(record) + "\n")
    OUT.flush()


def show(value):
    text = repr(value)
    return text if len(text) <= 600 else text[:600] + "..."


def where(exc):
    """The innermost line of the learner's code in the traceback: (line number, its text)."""
    if isinstance(exc, SyntaxError) and exc.filename == "solution.py":
        return exc.lineno, (LINES[exc.lineno - 1] if exc.lineno and exc.lineno <= len(LINES) else "")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "solution.py"]
    if not frames:
        return None, ""
    line = frames[-1].lineno
    return line, LINES[line - 1] if line and line <= len(LINES) else ""


def error(exc):
    line, text = where(exc)
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return {"error": message, "line": line, "line_text": text.strip()}


def timed(fn, seconds):
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def evaluate(node, ns):
    return eval(compile(ast.Expression(node), "<test>", "eval"), ns)


def parts(test):
    """(actual expression, expected expression or None, expected description) of `assert ...`, where recoverable."""
    node = test.test
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = node.left, node.comparators[0]
        if isinstance(left, ast.Call) and getattr(left.func, "id", "") == "abs" and isinstance(left.args[0], ast.BinOp):
            return left.args[0].left, left.args[0].right, None  # abs(actual - expected) < tolerance
        return left, right, None
    if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "isclose":
        return node.args[0], node.args[1], None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return node.operand, None, "a false value"
    return node, None, "a true value"


def check(test_source, ns):
    """Runs one test; returns its result record (without the index)."""
    tree = ast.parse(test_source)
    single = tree.body[0] if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert) else None
    if single is None:
        exec(compile(tree, "<test>", "exec"), ns)
        return {"status": "passed"}
    actual_node, expected_node, description = parts(single)
    actual = evaluate(actual_node, ns)
    expected = evaluate(expected_node, ns) if expected_node is not None else None
    node = single.test
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and actual_node is node.left:
        passed = bool(OPS.get(type(node.ops[0]), operator.eq)(actual, expected))
    else:
        passed = bool(evaluate(node, ns))
    record = {"status": "passed" if passed else "failed", "actual": show(actual),
              "expected": show(expected) if expected_node is not None else description}
    if not passed and single.msg is not None:
        record["message"] = str(evaluate(single.msg, ns))
    return record


def run_test(index, ns):
    captured = io.StringIO()
    report({"index": index, "status": "started"})
    try:
        with contextlib.redirect_stdout(captured):
            record = timed(lambda: check(CFG["tests"][index], ns), CFG["timeout"])
    except TestTimeout:
        record = {"status": "timeout", "error": f"took longer than {CFG['timeout']:g} s"}
    except AssertionError as exc:
        record = {"status": "failed", **error(exc)}
    except Exception as exc:
        record = {"status": "error", **error(exc)}
    report({"index": index, **record, "output": captured.getvalue()[-2000:]})


def main():
    signal.signal(signal.SIGALRM, _alarm)
    sys.setrecursionlimit(3000)
    ns = {"__name__": "__main__"}
    captured = io.StringIO()
    try:
        code = compile(SOURCE, "solution.py", "exec")
        with contextlib.redirect_stdout(captured):
            timed(lambda: exec(code, ns), CFG["timeout"])
            exec(compile(CFG["setup"], "<tests>", "exec"), ns)
    except TestTimeout:
        report({"load": {"status": "timeout", "error": f"loading took longer than {CFG['timeout']:g} s"}})
        return
    except BaseException as exc:
        report({"load": {"status": "error", **error(exc), "output": captured.getvalue()[-2000:]}})
        return
    start = time.monotonic()
    for index in range(CFG["start"], len(CFG["tests"])):
        if time.monotonic() - start > CFG["budget"]:
            break  # the grader reports the rest as not run
        run_test(index, ns)
    report({"done": True})


main()
