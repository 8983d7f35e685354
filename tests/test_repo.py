"""Repository context: chunks at syntax boundaries, an index kept fresh by modification time, retrieval of
the code related to the cursor (imports first), and its use by the API, the server and `codegemma index`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from codegemma import load
from codegemma.repo import MAX_LINES, RepoIndex, chunks_of, names_near
from codegemma.server import create_app
from test_server import LiveServer

GEOMETRY = '''"""Shapes."""

import math


def circle_area(radius):
    return math.pi * radius ** 2


class Rectangle:
    def __init__(self, width, height):
        self.width, self.height = width, height

    def area(self):
        return self.width * self.height
'''
UNITS = '''def to_metres(feet):
    return feet * 0.3048


def rectangle_perimeter(width, height):
    return 2 * (width + height)
'''
MAIN_PREFIX = ("from shapes.geometry import Rectangle, circle_area\n\n\n"
               "def report(w, h):\n    box = Rectangle(w, h)\n    ")


@pytest.fixture()
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "shapes").mkdir(parents=True)
    (root / "shapes" / "__init__.py").write_text("")
    (root / "shapes" / "geometry.py").write_text(GEOMETRY)
    (root / "shapes" / "units.py").write_text(UNITS)
    (root / "node_modules").mkdir()
    (root / "node_modules" / "dep.js").write_text("function Rectangle() {}\n")  # never indexed
    return root


def test_chunks_are_cut_at_top_level_definitions():
    chunks = chunks_of("shapes/geometry.py", GEOMETRY)
    assert "".join(c.text for c in chunks) == GEOMETRY  # nothing lost, nothing twice
    assert any(c.text.lstrip().startswith("class Rectangle") for c in chunks)
    long = "def f():\n" + "    x = 1\n" * (3 * MAX_LINES)
    parts = chunks_of("long.py", long)
    assert len(parts) == 4 and all(c.end - c.start + 1 <= MAX_LINES for c in parts)
    names = names_near("x = Rectangle(w, h)\nfor item in", " boxes:\n    print(item.area())")
    assert names[0] == "item" and names.index("Rectangle") < names.index("boxes") < names.index("area")
    assert "for" not in names and "in" not in names


def test_the_index_stays_fresh_and_finds_what_the_cursor_uses(repo, tmp_path):
    index = RepoIndex(repo, tmp_path / "index.sqlite")
    first = index.refresh()
    assert first["files"] == 3 and first["updated"] == 3
    assert index.refresh()["updated"] == 0  # nothing changed: nothing read
    found = index.related(MAIN_PREFIX, "\n", "app/main.py")
    assert found and found[-1].path == "shapes/geometry.py"  # the imported file, nearest the code
    assert "class Rectangle" in found[-1].text or "def circle_area" in found[-1].text
    units = repo / "shapes" / "units.py"
    units.write_text(UNITS + "\n\ndef hexagon_side(area):\n    return (2 * area / (3 * 3 ** 0.5)) ** 0.5\n")
    os.utime(units, (time.time() + 5, time.time() + 5))
    changed = index.refresh()
    assert changed["updated"] == 1 and changed["removed"] == 0
    assert any("hexagon_side" in f.text for f in index.related("side = hexagon_side(", ")\n", "app/x.py"))
    (repo / "shapes" / "geometry.py").unlink()
    assert index.refresh()["removed"] == 1
    assert all(f.path != "shapes/geometry.py" for f in index.related(MAIN_PREFIX, "\n", "app/main.py"))
    index.close()


@pytest.fixture(scope="module")
def cg(tiny_checkpoint):
    return load(tiny_checkpoint)


def test_api_and_server_put_retrieved_code_into_the_prompt(repo, cg, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with_repo = cg.fim_ids(MAIN_PREFIX, "\n", path="app/main.py", repo=repo)
    without = cg.fim_ids(MAIN_PREFIX, "\n", path="app/main.py")
    text = cg.tokenizer.decode(with_repo.ids)
    assert "shapes/geometry.py" in text and "class Rectangle" in text and len(with_repo.ids) > len(without.ids)
    assert isinstance(cg.complete(MAIN_PREFIX, "\n", path="app/main.py", repo=repo, max_tokens=4), str)
    server = LiveServer(create_app(cg, name="tiny", ctx=256, repo=repo))
    try:
        r = httpx.post(f"{server.url}/infill", json={"input_prefix": MAIN_PREFIX, "input_suffix": "\n",
                                                     "n_predict": 4}, timeout=60)
        assert r.status_code == 200, r.text
        assert "shapes/geometry.py\n" in cg.tokenizer.decode(server.engine.recent[-1])  # within the tiny window
    finally:
        server.stop()


def test_codegemma_index_command(repo, tmp_path):
    db = tmp_path / "cli.sqlite"
    out = subprocess.run([sys.executable, "-m", "codegemma.cli", "index", str(repo), "--db", str(db)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "3 files indexed" in out.stdout and db.is_file()
    bad = subprocess.run([sys.executable, "-m", "codegemma.cli", "index", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "not a folder" in bad.stderr
