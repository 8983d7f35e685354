"""Repository-level completion: does the repository context (repo.py) help, on code nobody tuned on?

Tasks come from the sources of installed Python packages with permissive licences: in a file that
imports names from another module of the same package, a line after the imports that uses one of
those names is held out (the model sees the file before and after it) and completed as one line. Each
task is run twice, without and with repository context (the package indexed, the held-out file's own
chunks left out), and scored by exact match and edit similarity (1 - Levenshtein distance / the longer
length, as CrossCodeEval and RepoBench score lines).
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import CodeGemmaError

# Installed with codegemma itself (fastapi, uvicorn and what they pull in); licences: BSD-3-Clause
# (starlette, uvicorn, click), MIT (fastapi, anyio, h11, pydantic).
PACKAGES = ("starlette", "fastapi", "uvicorn", "click", "anyio", "h11", "pydantic")
PER_PACKAGE = 40  # tasks drawn from each package
PROMPT_BUDGET = 1536  # tokens of prompt: the code nearest the cursor and the retrieved context


class RepoCompletionError(CodeGemmaError, ValueError):
    """No package to build tasks from, or a results folder from another run."""


@dataclass(frozen=True)
class Task:
    task_id: str
    package: str
    path: str  # relative to the package's parent folder, as the prompt names it
    line: int  # 1-based line held out
    prefix: str  # the file up to the held-out code (the line's indentation included)
    suffix: str  # from the end of the line on
    target: str  # the held-out code of the line


def package_root(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def tasks_for(package: str, root: Path, per_package: int = PER_PACKAGE, seed: int = 0) -> list[Task]:
    """Lines that use a name imported from a sibling module, outside import statements and after the first
    15 lines, one per file at most."""
    candidates = []
    for file in sorted(root.rglob("*.py")):
        rel = f"{package}/{file.relative_to(root).as_posix()}"
        try:
            text = file.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        names, inside_imports = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                inside_imports.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith(package + ".")):
                names |= {a.asname or a.name for a in node.names if len(a.asname or a.name) > 2 and a.name != "*"}
        if not names:
            continue
        lines = text.splitlines(keepends=True)
        uses = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names))) + r")\b")
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line))
        options = [i for i, line in enumerate(lines) if i >= 15 and i + 1 not in inside_imports
                   and 8 <= len(line.strip()) <= 100 and uses.search(line) and any(c in line for c in "(=.")
                   and not line.lstrip().startswith(("#", '"', "'", "@"))]
        if options:
            i = random.Random(f"{seed}/{rel}").choice(options)
            indent = len(lines[i]) - len(lines[i].lstrip())
            body = lines[i].rstrip("\n")
            candidates.append(Task(f"{rel}:{i + 1}", package, rel, i + 1, text[:starts[i] + indent],
                                   text[starts[i] + len(body):], body[indent:]))
    random.Random(seed).shuffle(candidates)
    return sorted(candidates[:per_package], key=lambda t: t.task_id)


def edit_similarity(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1 - prev[-1] / max(len(a), len(b))


def run(cg, out: str | Path, packages: tuple[str, ...] = PACKAGES, limit: int | None = None,
        per_package: int = PER_PACKAGE, max_tokens: int = 48) -> dict:
    """Generates and scores every task without and with context; resumes in the same folder."""
    from ..api import Options
    from ..prompts import FimRequest, build_fim
    from ..repo import RepoIndex

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = {"benchmark": "repo-completion", "model": cg.name, "packages": list(packages),
                "per_package": per_package, "max_tokens": max_tokens}
    marker = out / "run.json"
    if marker.exists() and json.loads(marker.read_text()) != identity:
        raise RepoCompletionError(f"{out} holds another run ({marker}); use another --out")
    marker.write_text(json.dumps(identity))
    results = out / "results.jsonl"
    done = {}
    if results.exists():
        for line in results.read_text().splitlines():
            row = json.loads(line)
            done[(row["task_id"], row["context"])] = row
    roots = {p: package_root(p) for p in packages}
    if not any(roots.values()):
        raise RepoCompletionError(f"none of the packages {', '.join(packages)} is installed")
    per = [tasks_for(p, root, per_package) for p, root in roots.items() if root]
    all_tasks = [t for group in itertools.zip_longest(*per) for t in group if t][:limit]  # --limit: every package
    indexes = {p: RepoIndex(roots[p].parent / p, out / f"index-{p}.sqlite") for p in {t.package for t in all_tasks}}
    for index in indexes.values():
        index.refresh()
    started = time.perf_counter()
    with results.open("a", encoding="utf-8") as log:
        for task in all_tasks:
            for with_context in (False, True):
                if (task.task_id, with_context) in done:
                    continue
                context = indexes[task.package].related(task.prefix, task.suffix, task.path) if with_context else ()
                fim = build_fim(cg.tokenizer, FimRequest(task.prefix, task.suffix, task.path, context),
                                budget=min(PROMPT_BUDGET, cg.config.max_position_embeddings - max_tokens))
                opts = Options(max_tokens=max_tokens, stop=(*fim.stop, "\n"), stop_ids=fim.stop_ids)
                completion = cg.run([fim.ids], opts)[0].text.split("\n")[0]
                row = {"task_id": task.task_id, "context": with_context, "completion": completion,
                       "target": task.target, "exact_match": completion.strip() == task.target.strip(),
                       "edit_similarity": edit_similarity(completion.strip(), task.target.strip()),
                       "context_files": len(context), "prompt_tokens": len(fim.ids)}
                log.write(json.dumps(row) + "\n")
                log.flush()
                done[(task.task_id, with_context)] = row
    rows = [done[(t.task_id, c)] for t in all_tasks for c in (False, True)]

    def mean(key: str, with_context: bool) -> float:
        values = [float(r[key]) for r in rows if r["context"] == with_context]
        return sum(values) / len(values) if values else 0.0

    summary = {**identity, "tasks": len(all_tasks), "seconds": round(time.perf_counter() - started, 1),
               "without_context": {"exact_match": mean("exact_match", False),
                                   "edit_similarity": mean("edit_similarity", False)},
               "with_context": {"exact_match": mean("exact_match", True),
                                "edit_similarity": mean("edit_similarity", True),
                                "context_files": mean("context_files", True)}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "tasks.jsonl").write_text("".join(json.dumps(asdict(t)) + "\n" for t in all_tasks))
    return summary
