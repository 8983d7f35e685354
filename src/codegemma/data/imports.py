"""Import resolution per language, as each build tool resolves it: which repository files a file depends on.

- Go: `go.mod`'s module path plus a package directory; a Go import names a directory, and every
  non-test file of that package is a dependency. A `_test.go` file depends on its own package.
- Python: relative imports against the importing file's package; absolute imports against the
  repository's package roots (the parents of top-level packages, `src/` layouts, the script's own
  folder); a module is `name.py` or `name/__init__.py`, and importing it runs its packages' `__init__.py`.
- Java, Kotlin and C#: the `package`/`namespace` declarations found in the files (never folder names),
  the type names each file declares, and the names a file uses from imported and its own packages.
- JavaScript/TypeScript: relative imports with extension and `index` resolution.
- C/C++: `#include "..."` relative to the including file, then to the include folders (CMake
  `include_directories`/`target_include_directories`, Makefile `-I`, folders named `include`).
- Rust: `mod x;` files and `use crate::/self::/super::` module paths.

Imports are read with tree-sitter from the top IMPORT_LINES lines of a file.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Iterator

from .languages import IMPORT_LINES, IMPORT_NODES, language_of, parser

# Files read to resolve imports but never packed (they are not source in a supported language).
BUILD_FILES = ("go.mod", "CMakeLists.txt", "Makefile", "makefile", "GNUmakefile")

_JS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")


def import_statements(lang: str, source: str) -> list[str]:
    """The text of each import statement in the top IMPORT_LINES lines, whitespace normalised."""
    head = "\n".join(source.splitlines()[:IMPORT_LINES]).encode("utf-8", errors="replace")
    found: list[str] = []
    stack = [parser(lang).parse(head).root_node]
    while stack:
        node = stack.pop()
        if node.type in IMPORT_NODES[lang]:
            text = " ".join(node.text.decode("utf-8", errors="replace").split())
            if node.type not in ("call_expression", "export_statement") or _js_source(text):
                found.append(text)
                continue
        stack.extend(reversed(node.children))
    return found


def _js_source(text: str) -> str | None:
    """The module specifier of an import/export-from/require()/import() statement."""
    m = (re.match(r"""(?:require|import)\s*\(\s*['"]([^'"]+)['"]\s*\)$""", text)
         or re.search(r"""\bfrom\s*['"]([^'"]+)['"]""", text) or re.match(r"""import\s*['"]([^'"]+)['"]""", text))
    return m.group(1) if m else None


class RepositoryIndex:
    """What resolution needs to know about a repository: its paths, folders, declarations and build files."""

    def __init__(self, files: dict[str, str], build_files: dict[str, str] | None = None) -> None:
        self.files = files
        self.build_files = build_files or {}
        self.dirs: dict[str, list[str]] = defaultdict(list)  # folder -> the files directly in it
        for p in sorted(files):
            self.dirs[posixpath.dirname(p)].append(p)
        self.folders = {posixpath.dirname(p) for p in files} | {""}
        for d in list(self.folders):
            while d:
                d = posixpath.dirname(d)
                self.folders.add(d)
        self.python_roots = _python_package_roots(files)
        self.go_modules = _go_modules(self.build_files)
        self.include_dirs = _include_dirs(self.folders, self.build_files)
        self.jvm = Declarations(files, ("java", "kotlin"))
        self.dotnet = Declarations(files, ("csharp",))


def dependencies(files: dict[str, str], build_files: dict[str, str] | None = None) -> dict[str, set[str]]:
    """path -> the repository files it depends on (itself and unresolved imports left out)."""
    index = RepositoryIndex(files, build_files)
    graph: dict[str, set[str]] = {}
    for path in sorted(files):
        lang = language_of(path)
        graph[path] = (_RESOLVERS[lang](index, path, files[path]) - {path}) if lang else set()
    return graph


# Python
def _python_package_roots(files: dict[str, str]) -> list[str]:
    """Folders that hold top-level packages (a package folder whose parent is not a package), and '', 'src'."""
    packages = {posixpath.dirname(p) for p in files if posixpath.basename(p) == "__init__.py"}
    roots = {posixpath.dirname(d) for d in packages if d and posixpath.dirname(d) not in packages}
    return sorted(roots | {"", "src"})


def _python_module(index: RepositoryIndex, root: str, parts: list[str]) -> set[str] | None:
    """The files importing module ROOT/parts runs: the module and its packages' __init__.py (None: no module)."""
    base = posixpath.join(root, *parts)
    init = posixpath.join(base, "__init__.py")
    candidates = (base + ".py", init) if parts else (init,)
    target = next((c for c in candidates if c in index.files), None)
    if target is None and base not in index.folders:  # neither a module nor a (namespace) package
        return None
    found = {target} if target else set()
    for i in range(1, len(parts)):
        init = posixpath.join(root, *parts[:i], "__init__.py")
        if init in index.files:
            found.add(init)
    return found


def _python_roots_for(index: RepositoryIndex, path: str) -> list[str]:
    folder = posixpath.dirname(path)
    own = [] if posixpath.join(folder, "__init__.py") in index.files else [folder]  # a script's sys.path[0]
    ancestors = sorted((r for r in index.python_roots if not r or folder == r or folder.startswith(r + "/")),
                       key=len, reverse=True)
    return own + ancestors + [r for r in index.python_roots if r not in ancestors and r not in own]


def _python(index: RepositoryIndex, path: str, source: str) -> set[str]:
    deps: set[str] = set()
    for text in import_statements("python", source):
        m = re.match(r"from\s+(\.*)\s*([\w.]*)\s+import\s+\(?\s*(.+?)\s*\)?$", text)
        if m:
            level, module, names = len(m.group(1)), m.group(2), m.group(3)
            names_list = [n.split(" as ")[0].strip() for n in names.split(",")]
            deps |= _python_from(index, path, level, module.split(".") if module else [],
                                 [n for n in names_list if n and n != "*"])
        elif text.startswith("import "):
            for item in text[len("import "):].split(","):
                parts = item.split(" as ")[0].strip().split(".")
                deps |= next((found for root in _python_roots_for(index, path)
                              if (found := _python_module(index, root, parts)) is not None), set())
    return deps


def _python_from(index: RepositoryIndex, path: str, level: int, parts: list[str], names: list[str]) -> set[str]:
    if level:
        base = posixpath.dirname(path)
        for _ in range(level - 1):
            base = posixpath.dirname(base)
        roots = [base]
    else:
        roots = _python_roots_for(index, path)
    for root in roots:
        found = _python_module(index, root, parts)
        if found is None:
            continue
        for name in names:  # `from pkg import mod` imports the submodule pkg/mod when there is one
            sub = _python_module(index, root, [*parts, name])
            found |= sub or set()
        return found
    return set()


# Go
def _go_modules(build_files: dict[str, str]) -> list[tuple[str, str]]:
    """(module path, folder) of every go.mod, the longest module path first."""
    mods = []
    for path, text in build_files.items():
        if posixpath.basename(path) == "go.mod":
            m = re.search(r"^\s*module\s+\"?([^\s\"]+)", text, re.MULTILINE)
            if m:
                mods.append((m.group(1), posixpath.dirname(path)))
    return sorted(mods, key=lambda m: (-len(m[0]), m[1]))


def _go_package_dir(index: RepositoryIndex, spec: str) -> str | None:
    for module, folder in index.go_modules:
        if spec == module or spec.startswith(module + "/"):
            return posixpath.join(folder, spec[len(module) + 1:]) if spec != module else folder
    if index.go_modules or "." not in spec.split("/")[0]:
        return None
    # no go.mod (GOPATH layout): the repository folder whose path ends the import path
    matches = [d for d in index.dirs if d and spec.endswith("/" + d)]
    return max(matches, key=len) if matches else None


def _go_package(index: RepositoryIndex, folder: str) -> set[str]:
    return {p for p in index.dirs.get(folder, ()) if p.endswith(".go") and not p.endswith("_test.go")}


def _go(index: RepositoryIndex, path: str, source: str) -> set[str]:
    deps = _go_package(index, posixpath.dirname(path)) if path.endswith("_test.go") else set()
    for text in import_statements("go", source):
        m = re.search(r'"([^"]+)"', text)
        folder = _go_package_dir(index, m.group(1)) if m else None
        if folder is not None:
            deps |= _go_package(index, folder)
    return deps


# Java, Kotlin, C#
_PACKAGE = {"java": re.compile(r"^\s*package\s+([\w.]+)\s*;", re.MULTILINE),
            "kotlin": re.compile(r"^\s*package\s+([\w.`]+)", re.MULTILINE),
            "csharp": re.compile(r"^\s*namespace\s+([\w.]+)", re.MULTILINE)}
_MODIFIERS = (r"(?:(?:public|private|protected|internal|abstract|final|static|sealed|non-sealed|strictfp|partial|"
              r"data|open|inner|enum|annotation|value|inline|fun|readonly|ref|unsafe|new|expect|actual|const)\s+)*")
_TYPES = re.compile(rf"^[ \t]*{_MODIFIERS}(?:class|interface|enum|record|struct|object|typealias|@interface)\s+(\w+)",
                    re.MULTILINE)
_KOTLIN_TOP_LEVEL = re.compile(r"^(?:(?:public|internal|private|inline|suspend|const|operator|infix|tailrec)\s+)*"
                               r"(?:fun|val|var)\s+(?:<[^>]*>\s*)?(?:[\w.]+\.)?(\w+)", re.MULTILINE)
_IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")
_QUALIFIED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b")


class Declarations:
    """Packages (namespaces) and the names each file declares in them, read from the files themselves."""

    def __init__(self, files: dict[str, str], langs: tuple[str, ...]) -> None:
        self.packages: dict[str, list[str]] = {}  # file -> the packages/namespaces it declares
        self.types: dict[tuple[str, str], set[str]] = defaultdict(set)  # (package, type name) -> files
        self.names: dict[tuple[str, str], set[str]] = defaultdict(set)  # (package, any top-level name) -> files
        self.members: dict[str, set[str]] = defaultdict(set)  # package -> files
        for path in sorted(files):
            lang = language_of(path)
            if lang not in langs:
                continue
            text = files[path]
            packages = [p.replace("`", "") for p in _PACKAGE[lang].findall(text)] or [""]
            self.packages[path] = packages
            types = set(_TYPES.findall(text))
            names = types | (set(_KOTLIN_TOP_LEVEL.findall(text)) if lang == "kotlin" else set())
            for package in packages:
                self.members[package].add(path)
                for t in types:
                    self.types[(package, t)].add(path)
                for n in names:
                    self.names[(package, n)].add(path)

    def qualified(self, parts: list[str]) -> set[str]:
        """Files declaring a.b.Name (or holding a member a.b.Name.member): the longest declared package wins."""
        for i in range(len(parts) - 1, 0, -1):
            package = ".".join(parts[:i])
            if package in self.members:
                return set(self.names.get((package, parts[i]), ()))
        return set()

    def used(self, packages: list[str], source: str) -> set[str]:
        """Files declaring a type the source names: unqualified from these packages, or fully qualified."""
        identifiers = set(_IDENTIFIER.findall(source))
        found = {f for package in packages if package in self.members
                 for name in identifiers for f in self.types.get((package, name), ())}
        for name in set(_QUALIFIED.findall(source)):
            found |= self.qualified(name.split("."))
        return found


def _jvm(index: RepositoryIndex, path: str, source: str) -> set[str]:
    lang = language_of(path)
    decl = index.jvm
    visible = list(decl.packages.get(path, [""]))  # a file sees its own package without imports
    deps: set[str] = set()
    for text in import_statements(lang, source):
        m = re.match(r"import\s+(?:static\s+)?([\w.`]+?)(\.\*)?\s*(?:as\s+\w+)?;?$", text)
        if not m:
            continue
        parts = m.group(1).replace("`", "").split(".")
        if m.group(2):  # a.b.* : the whole package (or a type's members)
            visible.append(".".join(parts))
            deps |= decl.qualified(parts)
        else:
            deps |= decl.qualified(parts)
    return deps | decl.used(visible, source)


def _csharp(index: RepositoryIndex, path: str, source: str) -> set[str]:
    decl = index.dotnet
    visible: list[str] = []
    for namespace in decl.packages.get(path, [""]):  # a namespace sees itself and its enclosing namespaces
        parts = namespace.split(".")
        visible += [".".join(parts[:i]) for i in range(len(parts), 0, -1)] + [""]
    deps: set[str] = set()
    for text in import_statements("csharp", source):
        m = re.match(r"(?:global\s+)?using\s+(static\s+)?(?:(\w+)\s*=\s*)?([\w.]+)\s*;", text)
        if not m:
            continue
        parts = m.group(3).split(".")
        if m.group(1) or m.group(2):  # `using static A.B.T;` and `using X = A.B.T;` name a type
            deps |= decl.qualified(parts)
        else:
            visible.append(m.group(3))
    return deps | decl.used(visible, source)


# JavaScript / TypeScript
def _js(index: RepositoryIndex, path: str, source: str) -> set[str]:
    deps: set[str] = set()
    for text in import_statements(language_of(path), source):
        spec = _js_source(text)
        if not spec or not spec.startswith(("./", "../")) and spec not in (".", ".."):
            continue
        base = posixpath.normpath(posixpath.join(posixpath.dirname(path), spec))
        stem = base.rsplit(".", 1)[0] if base.endswith((".js", ".jsx", ".mjs", ".cjs")) else None
        candidates = [base, *(base + e for e in _JS_EXTENSIONS),
                      *(posixpath.join(base, "index" + e) for e in _JS_EXTENSIONS),
                      *((stem + e for e in (".ts", ".tsx", ".mts", ".cts")) if stem else ())]  # TS: './x.js' is x.ts
        found = next((c for c in candidates if c in index.files), None)
        if found:
            deps.add(found)
    return deps


# C / C++
def _include_dirs(folders: set[str], build_files: dict[str, str]) -> list[str]:
    """Include folders: from CMake and Makefiles (relative to their folder), then every folder named include."""
    dirs: list[str] = []
    for path, text in sorted(build_files.items()):
        base = posixpath.dirname(path)
        found: list[str] = []
        if posixpath.basename(path) == "CMakeLists.txt":
            for args in re.findall(r"(?:target_)?include_directories\s*\(([^)]*)\)", text, re.IGNORECASE):
                found += [a for a in args.split() if a not in ("PUBLIC", "PRIVATE", "INTERFACE", "SYSTEM", "BEFORE",
                                                                "AFTER") and "$<" not in a]
            found = [re.sub(r"\$\{(CMAKE_CURRENT_SOURCE_DIR|PROJECT_SOURCE_DIR|CMAKE_SOURCE_DIR)\}/?", "", a)
                     .strip('"') for a in found]
            found = [a for a in found if "${" not in a]
        else:
            found = re.findall(r"-I\s*([\w./-]+)", text)
        dirs += [posixpath.normpath(posixpath.join(base, a)) if a else base for a in found]
    dirs += sorted(f for f in folders if posixpath.basename(f) == "include")
    return [d if d != "." else "" for d in dict.fromkeys(dirs)]


def _c(index: RepositoryIndex, path: str, source: str) -> set[str]:
    deps: set[str] = set()
    for text in import_statements(language_of(path), source):
        m = re.search(r'#\s*include\s*"([^"]+)"', text)
        if not m:
            continue
        for folder in [posixpath.dirname(path), *index.include_dirs]:
            candidate = posixpath.normpath(posixpath.join(folder, m.group(1)))
            if candidate in index.files:
                deps.add(candidate)
                break
    return deps


# Rust
def _rust_module_dir(path: str) -> str:
    """The folder holding a Rust file's child modules: src/a.rs -> src/a; src/lib.rs, src/a/mod.rs -> their folder."""
    name = posixpath.basename(path)
    return posixpath.dirname(path) if name in ("main.rs", "lib.rs", "mod.rs") else path[:-3]


def _rust_module_file(index: RepositoryIndex, folder: str, parts: list[str]) -> str | None:
    """The file of the longest module path folder/parts... that exists (a::b::Item -> a/b.rs), else folder's own."""
    for n in range(len(parts), -1, -1):
        base = posixpath.join(folder, *parts[:n])
        own = (posixpath.join(base, "lib.rs"), posixpath.join(base, "main.rs")) if n == 0 else ()
        for candidate in (base + ".rs", posixpath.join(base, "mod.rs"), *own):
            if candidate in index.files:
                return candidate
    return None


def _rust_uses(text: str) -> Iterator[str]:
    """`use a::{b, c::d};` -> a::b, a::c::d (one level of braces)."""
    m = re.match(r"(?:pub(?:\([^)]*\))?\s+)?use\s+(.+?);?$", text)
    if not m:
        return
    body = m.group(1)
    brace = re.match(r"(.*?)::\{(.*)\}$", body)
    if brace:
        for item in brace.group(2).split(","):
            if item.strip():
                yield f"{brace.group(1)}::{item.strip()}"
    else:
        yield body


def _rust(index: RepositoryIndex, path: str, source: str) -> set[str]:
    deps: set[str] = set()
    crate = posixpath.dirname(path)
    while crate and not any(posixpath.join(crate, f) in index.files for f in ("lib.rs", "main.rs")):
        crate = posixpath.dirname(crate)
    for text in import_statements("rust", source):
        mod = re.match(r"(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;$", text)
        if mod:
            found = _rust_module_file(index, _rust_module_dir(path), [mod.group(1)])
            deps |= {found} if found else set()
            continue
        for use in _rust_uses(text):
            parts = [p.split(" as ")[0].strip() for p in use.split("::")]
            if parts[0] == "crate":
                folder, parts = crate, parts[1:]
            elif parts[0] in ("self", "super"):
                folder = _rust_module_dir(path)
                while parts and parts[0] == "super":
                    folder, parts = posixpath.dirname(folder), parts[1:]
                parts = parts[1:] if parts and parts[0] == "self" else parts
            else:
                continue
            found = _rust_module_file(index, folder, parts)
            deps |= {found} if found else set()
    return deps


_RESOLVERS = {"python": _python, "go": _go, "java": _jvm, "kotlin": _jvm, "csharp": _csharp,
              "javascript": _js, "typescript": _js, "c": _c, "cpp": _c, "rust": _rust}
