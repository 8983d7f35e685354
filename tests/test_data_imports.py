"""Dependency order per language, resolved as each build tool resolves imports: one small repository per
language, written as people write them, with the order its build tool implies (imports first)."""

from __future__ import annotations

import pytest

from codegemma.data.imports import BUILD_FILES, dependencies
from codegemma.data.packing import order_repository


def before(order: list[str], *chain: str) -> bool:
    pos = {p: i for i, p in enumerate(order)}
    return all(pos[a] < pos[b] for a, b in zip(chain, chain[1:]))


def split_build_files(repo: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    build = {p: t for p, t in repo.items() if p.rsplit("/", 1)[-1] in BUILD_FILES}
    return {p: t for p, t in repo.items() if p not in build}, build


GO = {  # the trap: main.go imports a package directory named by go.mod's module path plus a folder
    "go.mod": "module example.com/wordcount\n\ngo 1.22\n",
    "main.go": 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/wordcount/textutil"\n)\n\n'
               'func main() { fmt.Println(textutil.Count("a b")) }\n',
    "textutil/split.go": 'package textutil\n\nimport "strings"\n\nfunc Split(s string) []string '
                         '{ return strings.Fields(s) }\n',
    "textutil/count.go": "package textutil\n\nfunc Count(s string) int { return len(Split(s)) }\n",
    "textutil/count_test.go": 'package textutil\n\nimport "testing"\n\nfunc TestCount(t *testing.T) {}\n',
    "internal/zz/z.go": 'package zz\n\nimport "example.com/wordcount/textutil"\n\nvar N = textutil.Count("x")\n',
}


def test_go_packages_through_go_mod():
    files, build = split_build_files(GO)
    graph = dependencies(files, build)
    package = {"textutil/split.go", "textutil/count.go"}
    assert graph["main.go"] == package  # every non-test file of the imported package, not its tests
    assert graph["textutil/count_test.go"] == package  # a test file after its package
    order = order_repository(files, build)
    assert sorted(order) == sorted(files)
    for dep in package:
        assert before(order, dep, "main.go") and before(order, dep, "internal/zz/z.go")
        assert before(order, dep, "textutil/count_test.go")
    # the module path decides: under another module, example.com/wordcount/textutil is not this folder
    assert dependencies(files, {"go.mod": "module example.com/other\n"})["main.go"] == set()


PYTHON = {  # a src/ layout, relative imports, a package imported by a test outside it, a script beside a module
    "src/wordcount/__init__.py": "from .core import count\n",
    "src/wordcount/core.py": "from . import text\nfrom .text import split\n\ndef count(s):\n    return len(split(s))\n",
    "src/wordcount/text.py": "import re\n\ndef split(s):\n    return re.findall(r'\\w+', s)\n",
    "src/wordcount/cli/__init__.py": "",
    "src/wordcount/cli/main.py": "from ..core import count\nfrom ..text import split as _s\n\nprint(count('a'))\n",
    "src/wordcount/cli/util.py": "X = 1\n",  # `from ..core import util` must not find cli/util.py
    "src/wordcount/report.py": "from .core import util\n",
    "tests/test_core.py": "from wordcount.core import count\n\ndef test():\n    assert count('a b') == 2\n",
    "scripts/run.py": "import helpers\n\nhelpers.go()\n",
    "scripts/helpers.py": "def go():\n    pass\n",
    "text.py": "T = 1\n",  # a top-level module named like a package module: never the target of `from . import text`
}


def test_python_relative_and_absolute_against_package_roots():
    graph = dependencies(PYTHON)
    init = "src/wordcount/__init__.py"
    assert graph["src/wordcount/core.py"] == {init, "src/wordcount/text.py"}
    # inside its own package a module's relative imports do not re-run the package's __init__.py
    assert graph["src/wordcount/cli/main.py"] == {"src/wordcount/core.py", "src/wordcount/text.py"}
    assert graph["src/wordcount/report.py"] == {"src/wordcount/core.py"}
    assert graph["tests/test_core.py"] == {init, "src/wordcount/core.py"}  # the package root is src/
    assert graph["scripts/run.py"] == {"scripts/helpers.py"}  # a script's folder is its sys.path[0]
    assert graph["text.py"] == set()
    order = order_repository(PYTHON)
    assert before(order, "src/wordcount/text.py", "src/wordcount/core.py", "src/wordcount/cli/main.py")
    assert before(order, "src/wordcount/core.py", "tests/test_core.py")
    assert before(order, "scripts/helpers.py", "scripts/run.py")


JVM = {  # Kotlin and Java whose folders do not mirror their packages (legal in both languages)
    "app/Main.kt": "package com.acme.app\n\nimport com.acme.text.tokenize\nimport com.acme.model.*\n\n"
                   "fun main() { println(tokenize(Doc(\"a b\").body)) }\n",
    "lib/strings.kt": "package com.acme.text\n\nfun tokenize(s: String): List<String> = s.split(\" \")\n",
    "lib/Doc.kt": "package com.acme.model\n\ndata class Doc(val body: String)\n\nclass Unused\n",
    "lib/Other.kt": "package com.acme.model\n\nclass Other\n",
    "java/src/Util.java": "package org.demo.core;\n\npublic final class Util {\n  public static int one() "
                          "{ return 1; }\n}\n",
    "java/src/Helper.java": "package org.demo.core;\n\nclass Helper {\n  int two() { return Util.one() + 1; }\n}\n",
    "java/other/App.java": "package org.demo.app;\n\nimport org.demo.core.Util;\n\npublic class App { }\n",
    # a folder that mirrors a package it does not declare: a suffix match on "core/Util" would pick it
    "org/demo/core/Util.java": "package org.decoy;\n\npublic class Util { }\n",
}


def test_kotlin_and_java_through_package_declarations():
    graph = dependencies(JVM)
    assert graph["app/Main.kt"] == {"lib/strings.kt", "lib/Doc.kt"}  # the used type of the wildcard package only
    assert graph["java/src/Helper.java"] == {"java/src/Util.java"}  # same package, no import
    assert graph["java/other/App.java"] == {"java/src/Util.java"}
    assert graph["lib/Other.kt"] == set()
    order = order_repository(JVM)
    assert before(order, "lib/strings.kt", "app/Main.kt") and before(order, "lib/Doc.kt", "app/Main.kt")
    assert before(order, "java/src/Util.java", "java/src/Helper.java")
    assert before(order, "java/src/Util.java", "java/other/App.java")


CSHARP = {
    "Program.cs": "using System;\nusing Acme.Text;\nusing Counter = Acme.Stats.WordCounter;\n\n"
                  "class Program { static void Main() { Console.WriteLine(new Tokenizer().Split(\"a\")); "
                  "new Counter(); } }\n",
    "Lib/Tokens.cs": "namespace Acme.Text;\n\npublic class Tokenizer\n{\n    public string[] Split(string s) "
                     "=> s.Split(' ');\n}\n",
    "Lib/Unrelated.cs": "namespace Acme.Text;\n\npublic class Formatter { }\n",
    "Misc/Counting.cs": "namespace Acme.Stats\n{\n    public class WordCounter\n    {\n        Acme.Text.Tokenizer t;\n"
                        "    }\n}\n",
    "Misc/Inner.cs": "namespace Acme.Stats.Deep\n{\n    class Inner { WordCounter c; }\n}\n",  # sees Acme.Stats
}


def test_csharp_through_namespace_declarations():
    graph = dependencies(CSHARP)
    assert graph["Program.cs"] == {"Lib/Tokens.cs", "Misc/Counting.cs"}
    assert graph["Misc/Inner.cs"] == {"Misc/Counting.cs"}  # an enclosing namespace is visible
    assert graph["Misc/Counting.cs"] == {"Lib/Tokens.cs"}  # a fully qualified name
    assert graph["Lib/Unrelated.cs"] == set()
    order = order_repository(CSHARP)
    assert before(order, "Lib/Tokens.cs", "Program.cs") and before(order, "Misc/Counting.cs", "Program.cs")


JS = {
    "src/index.ts": "import { count } from './count';\nexport * from './lib';\n",
    "src/count.ts": "import { split } from './lib/split.js';\nexport const count = (s: string) => split(s).length;\n",
    "src/lib/index.ts": "export { split } from './split';\n",
    "src/lib/split.ts": "export const split = (s: string) => s.split(' ');\n",
    "web/main.js": "const { render } = require('./view');\nimport('../src/count').then(console.log);\n",
    "web/view/index.jsx": "import React from 'react';\nexport const render = () => null;\n",
    "web/view.test.js": "import './view';\n",
}


def test_javascript_typescript_relative_with_extensions_and_index():
    graph = dependencies(JS)
    assert graph["src/index.ts"] == {"src/count.ts", "src/lib/index.ts"}
    assert graph["src/count.ts"] == {"src/lib/split.ts"}  # TypeScript's './x.js' is x.ts
    assert graph["src/lib/index.ts"] == {"src/lib/split.ts"}
    assert graph["web/main.js"] == {"web/view/index.jsx", "src/count.ts"}
    assert graph["web/view.test.js"] == {"web/view/index.jsx"}
    order = order_repository(JS)
    assert before(order, "src/lib/split.ts", "src/lib/index.ts", "src/index.ts")
    assert before(order, "src/lib/split.ts", "src/count.ts", "web/main.js")


C = {
    "CMakeLists.txt": "project(wc C)\ninclude_directories(${PROJECT_SOURCE_DIR}/third/api)\n"
                      "add_executable(wc src/main.c src/count.c)\n",
    "include/wc/count.h": "#pragma once\n#include \"wc/types.h\"\nint count(const char *s);\n",
    "include/wc/types.h": "#pragma once\ntypedef unsigned long wc_size;\n",
    "src/count.c": "#include \"wc/count.h\"\n#include \"local.h\"\nint count(const char *s) { return 0; }\n",
    "src/local.h": "#define LOCAL 1\n",
    "src/main.c": "#include <stdio.h>\n#include \"wc/count.h\"\n#include \"api.h\"\nint main(void) { return 0; }\n",
    "third/api/api.h": "#define API 1\n",
    "tools/local.h": "#define OTHER 1\n",  # same name, other folder: the including file's folder wins
    "tools/gen.cpp": "#include \"local.h\"\n#include \"../src/local.h\"\nint main() { return 0; }\n",
}


def test_c_includes_relative_to_the_file_then_include_folders():
    files, build = split_build_files(C)
    graph = dependencies(files, build)
    assert graph["src/count.c"] == {"include/wc/count.h", "src/local.h"}
    assert graph["include/wc/count.h"] == {"include/wc/types.h"}
    assert graph["src/main.c"] == {"include/wc/count.h", "third/api/api.h"}  # api/ from CMake's include folders
    assert graph["tools/gen.cpp"] == {"tools/local.h", "src/local.h"}
    order = order_repository(files, build)
    assert before(order, "include/wc/types.h", "include/wc/count.h", "src/count.c")
    assert before(order, "third/api/api.h", "src/main.c")


RUST = {
    "src/main.rs": "mod text;\nmod stats;\nuse crate::stats::count;\n\nfn main() { println!(\"{}\", count(\"a\")); }\n",
    "src/text.rs": "pub fn split(s: &str) -> Vec<&str> { s.split(' ').collect() }\n",
    "src/stats/mod.rs": "mod hist;\nuse super::text::split;\npub fn count(s: &str) -> usize { split(s).len() }\n",
    "src/stats/hist.rs": "use crate::{text, stats::count};\n",
}


def test_rust_modules():
    graph = dependencies(RUST)
    assert graph["src/main.rs"] == {"src/text.rs", "src/stats/mod.rs"}
    assert graph["src/stats/mod.rs"] == {"src/stats/hist.rs", "src/text.rs"}
    assert graph["src/stats/hist.rs"] == {"src/text.rs", "src/stats/mod.rs"}
    order = order_repository(RUST)
    assert before(order, "src/text.rs", "src/stats/mod.rs", "src/main.rs")


@pytest.mark.parametrize("repo", [GO, PYTHON, JVM, CSHARP, JS, C, RUST])
def test_order_is_a_permutation_independent_of_input_order(repo):
    files, build = split_build_files(repo)
    order = order_repository(files, build)
    assert sorted(order) == sorted(files)
    assert order == order_repository(dict(reversed(list(files.items()))), build)
