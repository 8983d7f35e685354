"""BabelCode in C#: the prompt (`class Solution {`, the statement as a /** */ comment, then `public R PascalName(T a)
{`) and the driver.

The completion is cut at BabelCode's stop `\\n    }\\n`, which removes the method's closing brace: the
driver closes the method and the class. Programs are compiled with Mono's mcs (Debian's mono-devel,
what BabelCode's `mono-csc` is) and run with mono in the same sandbox call; a compile error is status
"compile error". As in BabelCode, a double is a `decimal` (literals `1.5m`) and a float a `float`.

Comparison: a float or double return is compared with BabelCode's tolerance; anything else by a walk
in which lists compare in order, dictionaries by their entries (key order does not matter) and sets
by their members. BabelCode serializes both values to JSON with System.Web's JavaScriptSerializer,
which throws on a dictionary with integer keys under Mono (so no answer to such a question passes)
and makes dictionary and set comparisons depend on insertion order; this driver needs no System.Web.
"""

from __future__ import annotations

import json
import os

from ...errors import CodeGemmaError
from .common import arguments, camel, commented, statement, tolerance
from .questions import Question
from .schema import Type

NAME = "csharp"
STOPS = ("\n    }\n",)  # BabelCode's language_stop_words.json ("CSharp")
SOURCE_FILE = "program.cs"
CLOSER = "\n    }\n}"
MCS, MONO = "/usr/bin/mcs", "/usr/bin/mono"  # Debian's mono-devel
INSTALL = "C# needs Mono's mcs and mono in /usr/bin: apt-get install mono-devel (or: make toolchains)"
COMPILE_FAILED = 97  # the exit status of the sandbox script when mcs fails
HEADER = ("using System;\nusing System.Numerics;\nusing System.Diagnostics;\nusing System.Collections.Generic;\n"
          "using System.Linq;\nusing System.Text;\nusing System.Security.Cryptography;\n\n")
TYPES = {"integer": "int", "long": "long", "float": "float", "double": "decimal", "boolean": "bool",
         "character": "char", "string": "string"}
SAME = """\
    static bool Same(object a, object b) {
        var da = a as System.Collections.IDictionary;
        var db = b as System.Collections.IDictionary;
        if (da != null && db != null) {
            if (da.Count != db.Count) return false;
            foreach (System.Collections.DictionaryEntry e in da) {
                if (!db.Contains(e.Key) || !Same(e.Value, db[e.Key])) return false;
            }
            return true;
        }
        var la = a as System.Collections.IList;
        var lb = b as System.Collections.IList;
        if (la != null && lb != null) {
            if (la.Count != lb.Count) return false;
            for (int i = 0; i < la.Count; i++) {
                if (!Same(la[i], lb[i])) return false;
            }
            return true;
        }
        var sa = a as System.Collections.IEnumerable;
        var sb = b as System.Collections.IEnumerable;
        if (sa != null && sb != null && !(a is string)) {
            return new HashSet<object>(sa.Cast<object>()).SetEquals(sb.Cast<object>());
        }
        return Equals(a, b);
    }
"""


def pascal(name: str) -> str:
    c = camel(name)
    return c[:1].upper() + c[1:]


def type_name(t: Type) -> str:
    if t.kind == "list":
        return f"List<{type_name(t.args[0])}>"
    if t.kind == "set":
        return f"HashSet<{type_name(t.args[0])}>"
    if t.kind == "map":
        return f"Dictionary<{type_name(t.args[0])}, {type_name(t.args[1])}>"
    return TYPES[t.kind]


def literal(value: object, t: Type) -> str:
    if t.kind == "float":
        return f"{float(value)!r}f"
    if t.kind == "double":
        return f"{float(value)!r}m"
    if t.kind == "long":
        return f"{value}L"
    if t.kind == "boolean":
        return "true" if value else "false"
    if t.kind == "character":
        return "'" + json.dumps(value)[1:-1].replace("'", "\\'") + "'"
    if t.kind == "string":
        return json.dumps(value)  # C#'s escapes for \\, ", \n, \t and \uXXXX (UTF-16, as JSON's) are JSON's
    if t.kind in ("list", "set"):
        items = value if t.kind == "list" else sorted(value, key=repr)
        return f"new {type_name(t)}{{{', '.join(literal(v, t.args[0]) for v in items)}}}"
    if t.kind == "map":
        pairs = ", ".join(f"{{{literal(k, t.args[0])}, {literal(v, t.args[1])}}}" for k, v in value.items())
        return f"new {type_name(t)}{{{pairs}}}"
    return str(value)


def prompt(q: Question, examples: bool = False) -> str:
    """`class Solution {`, the statement as a /** */ comment, then `public R PascalName(T a) {`."""
    text = statement(q, "C#", examples).replace(q.entry, pascal(q.entry)).replace("*/", "*\\/")
    doc = commented(text, "     * ")
    params = ", ".join(f"{type_name(t)} {name}" for name, t in q.params)
    head = f"    public {type_name(q.returns)} {pascal(q.entry)}({params}) {{"
    return f"class Solution {{\n    /**\n{doc}\n     */\n{head}"


def program(q: Question, prompt_text: str, completion: str, end: str) -> str:
    ret = type_name(q.returns)
    precision = {"float": "1e-06f", "double": "1e-09m"}.get(q.returns.kind)
    check = "Same(actual, expected)" if tolerance(q) is None else f"Math.Abs(actual - expected) < {precision}"
    params = "".join(f"{type_name(t)} arg{i}, " for i, (_, t) in enumerate(q.params))  # (a question's names may clash)
    args = ", ".join(f"arg{i}" for i in range(len(q.params)))
    calls = "\n".join(
        f'        Console.WriteLine("TEST-{i}..." + Driver('
        + ", ".join([*arguments(q, c, literal), literal(c.output, q.returns)]) + "));" for i, c in enumerate(q.tests))
    return (f"{HEADER}{prompt_text}{completion}{CLOSER}\n\n"
            f"class TestRunner {{\n{SAME}\n"
            f"    static bool ValidateSolution({ret} actual, {ret} expected) {{\n        return {check};\n    }}\n\n"
            f"    static string Driver({params}{ret} expected) {{\n        try {{\n"
            f"            {ret} actual = new Solution().{pascal(q.entry)}({args});\n"
            f'            return ValidateSolution(actual, expected) ? "PASSED" : "FAILED";\n'
            f"        }} catch (Exception e) {{\n            return e.GetType().Name;\n        }}\n    }}\n\n"
            f"    static void Main(string[] args) {{\n{calls}\n"
            f"        Console.WriteLine({json.dumps(end)});\n    }}\n}}\n")


def compile_failed(returncode: int | None, stderr: str) -> bool:
    return returncode == COMPILE_FAILED


def run_argv() -> tuple[dict[str, str], list[str]]:
    if not (os.access(MCS, os.X_OK) and os.access(MONO, os.X_OK)):
        raise CodeGemmaError(INSTALL)
    script = (f"{MCS} -nologo -r:System.Numerics.dll -out:main.exe {SOURCE_FILE} 1>&2 || exit {COMPILE_FAILED}; "
              f"exec {MONO} main.exe")
    return {}, ["/bin/sh", "-c", script]
