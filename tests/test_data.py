"""The FIM data pipeline: FIM invariants, repository ordering, filters, shards, reproducibility and bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections import Counter
from dataclasses import replace

import pytest

from codegemma.cli import main
from codegemma.data.filters import redact
from codegemma.data.fim import FimSettings, fim_tokens, rng_for, split
from codegemma.data.packing import break_cycles, dependency_graph, order_repository
from codegemma.data.pipeline import BuildSettings, DataInputError, build
from codegemma.data.shards import ShardError, TokenShards
from codegemma.eval.data import humaneval
from codegemma.tokenizer import from_sentencepiece

SOURCES = [
    ("a.py", "import os\n\n\ndef f(x):\n    return [i * 2 for i in range(x)]\n\n\nclass A:\n    pass\n"),
    ("Main.java", "public class Main {\n  public static void main(String[] a) {\n    System.out.println(1);\n  }\n}\n"),
    ("m.go", "package m\n\nfunc Add(a, b int) int {\n\treturn a + b\n}\n"),
    ("u.ts", "export function id<T>(x: T): T {\n  return x;\n}\n"),
    ("x.rs", "fn main() {\n    let v: Vec<i32> = (0..3).collect();\n    println!(\"{:?}\", v);\n}\n"),
    ("e.py", "s = '日本語 😀'\nprint(s)\n"),
]


@pytest.fixture(scope="module")
def tok(sp_folder):
    return from_sentencepiece(sp_folder / "tokenizer.model")


def test_fim_reassembles_exactly_and_is_deterministic():
    settings = FimSettings()
    for i in range(300):
        path, text = SOURCES[i % len(SOURCES)]
        s = split(text, path, rng_for(7, "repo", f"{i}/{path}"), settings)
        assert s.prefix + s.middle + s.suffix == text
        again = split(text, path, rng_for(7, "repo", f"{i}/{path}"), settings)
        assert again == s
    modes = [split(t, p, rng_for(1, "r", f"{i}"), settings).mode for i in range(60) for p, t in SOURCES[:1]]
    other = [split(t, p, rng_for(2, "r", f"{i}"), settings).mode for i in range(60) for p, t in SOURCES[:1]]
    assert modes != other


def test_fim_rates_within_tolerance():
    n = 3000
    modes = Counter(split(SOURCES[i % 6][1], SOURCES[i % 6][0], rng_for(0, "r", str(i)), FimSettings()).mode
                    for i in range(n))
    assert abs((modes["psm"] + modes["spm"]) / n - 0.8) < 0.03
    assert abs(modes["spm"] / (modes["psm"] + modes["spm"]) - 0.5) < 0.04
    assert Counter(split(SOURCES[0][1], "a.py", rng_for(0, str(i)), FimSettings(fim_rate=0.0)).mode
                   for i in range(50)) == {"none": 50}


def test_suffix_usually_starts_at_a_natural_point():
    text = SOURCES[0][1]
    from codegemma.data.languages import syntax_points
    points = syntax_points("python", text)
    natural = set(points.nodes) | set(points.lines)
    starts = [len(s.prefix + s.middle) for s in (split(text, "a.py", rng_for(3, str(i)), FimSettings(fim_rate=1.0))
                                                 for i in range(500))]
    share = sum(p in natural for p in starts) / len(starts)
    assert 0.75 <= share < 1.0  # node or line starts by design, plus a share of uniform splits


def test_fim_tokens_layouts_and_sentinel_text_stays_text(tok):
    text = "s = '<|fim_prefix|> and <|file_separator|>'\nx = 1\n"
    s = split(text, "a.py", rng_for(0, "x"), FimSettings(fim_rate=1.0, spm_rate=0.0))
    ids = fim_tokens(tok, s)
    assert s.mode == "psm" and ids.count(67) == 1 and ids.count(69) == 1 and ids.count(68) == 1 and 70 not in ids
    assert ids[0] == 67 and ids.index(69) < ids.index(68)
    spm = split(text, "a.py", rng_for(0, "x"), FimSettings(fim_rate=1.0, spm_rate=1.0))
    ids = fim_tokens(tok, spm)
    assert ids[0] == 69 and ids.index(67) < ids.index(68)
    assert tok.decode(ids).replace("<|fim_suffix|>", "", 1).replace("<|fim_prefix|>", "", 1) \
        .replace("<|fim_middle|>", "", 1) == spm.suffix + spm.prefix + spm.middle


def write_repo(root, files: dict[str, str]):
    for path, text in files.items():
        p = root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


PY_REPO = {
    "pkg/__init__.py": "",
    "pkg/util.py": "import json\n\ndef helper():\n    return 1\n",
    "pkg/core.py": "from pkg import util\n\ndef run():\n    return util.helper()\n",
    "pkg/cli.py": "from pkg.core import run\n\nrun()\n",
    "pkg/a.py": "from pkg import b\n\nA = 1\n",
    "pkg/b.py": "from pkg import a\nfrom pkg import util\n\nB = 2\n",
    "setup.py": "x = 1\n", "zeta.py": "def z():\n    return 0\n", "test_zeta.py": "import unittest\n",
    "docs/conf.py": "project = 'x'\n",
}
JAVA_REPO = {
    "src/main/java/com/acme/Util.java": "package com.acme;\npublic class Util { }\n",
    "src/main/java/com/acme/App.java": "package com.acme;\nimport com.acme.Util;\npublic class App { }\n",
    "src/main/java/com/acme/Extra.java": "package com.acme;\npublic class Extra { }\n",
    "src/test/java/com/acme/ExtraTest.java": "package com.acme;\npublic class ExtraTest { }\n",
}
GO_TS_REPO = {
    "util.go": "package m\n\nfunc U() int { return 1 }\n",
    "util_test.go": "package m\n\nimport \"testing\"\n\nfunc TestU(t *testing.T) {}\n",
    "web/lib/format.ts": "export const f = 1;\n",
    "web/app.ts": "import { f } from './lib/format';\nconsole.log(f);\n",
    "web/lib/parse.ts": "export const p = 2;\n",
    "web/lib/parse.spec.ts": "import { p } from './parse';\n",
}


def test_python_order_with_a_cycle_and_tests_beside_implementations():
    graph = dependency_graph(PY_REPO)
    # `from pkg import b` runs pkg/__init__.py, then pkg/b.py: both are dependencies
    assert graph["pkg/a.py"] == {"pkg/b.py", "pkg/__init__.py"}
    assert graph["pkg/core.py"] == {"pkg/util.py", "pkg/__init__.py"}
    dag, dropped = break_cycles(graph)
    assert len(dropped) == 1 and set(dropped[0]) == {"pkg/a.py", "pkg/b.py"}
    order = order_repository(PY_REPO)
    assert sorted(order) == sorted(PY_REPO)
    pos = {p: i for i, p in enumerate(order)}
    assert pos["pkg/util.py"] < pos["pkg/core.py"] < pos["pkg/cli.py"]
    assert pos["pkg/util.py"] < pos["pkg/b.py"]
    assert pos["test_zeta.py"] == pos["zeta.py"] + 1
    assert order == order_repository(dict(reversed(list(PY_REPO.items()))))


def test_java_and_go_ts_orders():
    order = order_repository(JAVA_REPO)
    assert order.index("src/main/java/com/acme/Util.java") < order.index("src/main/java/com/acme/App.java")
    assert order.index("src/test/java/com/acme/ExtraTest.java") == order.index("src/main/java/com/acme/Extra.java") + 1
    order = order_repository(GO_TS_REPO)
    assert order.index("web/lib/format.ts") < order.index("web/app.ts")
    assert order.index("util_test.go") == order.index("util.go") + 1
    assert order.index("web/lib/parse.spec.ts") == order.index("web/lib/parse.ts") + 1


def test_redaction():
    text, counts = redact("mail bob@example.org, ip 10.0.0.12, key AKIAIOSFODNN7EXAMPLE, "
                          "token ghp_0123456789abcdefghijABCDEFGHIJ, secret = 'q8F!x2Lm#9vZ0p', word = 'localhost', "
                          "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY----- 127.0.0.1")
    assert "bob@example.org" not in text and "10.0.0.12" not in text and "AKIA" not in text and "ghp_" not in text
    assert "q8F!x2Lm#9vZ0p" not in text and "MIIB" not in text
    assert "127.0.0.1" in text and "'localhost'" in text
    assert counts == {"email": 1, "ip": 1, "key": 4}


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "repos"
    write_repo(root / "py", PY_REPO)
    write_repo(root / "java", JAVA_REPO)
    write_repo(root / "gots", GO_TS_REPO)
    planted = humaneval()[3]
    bad = root / "bad"
    write_repo(bad, {"copied.py": "# found online\n" + planted.prompt + planted.canonical,
                     "latin1.py": "", "blob.py": "", "empty.py": "", "dup.py": PY_REPO["pkg/util.py"],
                     "near.py": PY_REPO["pkg/util.py"].replace("return 1", "return 1  "),
                     "vendor/lib.py": "x = 1\n", "gen.go": "// Code generated by tool. DO NOT EDIT.\npackage x\n",
                     "notes.txt": "hello\n", "sentinel.py": "s = '<|fim_prefix|><|fim_middle|>'\n"})
    (bad / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (bad / "blob.py").write_bytes(b"\x00\x01\x02binary")
    (bad / "loop").symlink_to(bad, target_is_directory=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(bad / "sock.py"))
    yield root
    sock.close()


def test_build_counts_every_file_and_reason(corpus, tmp_path, sp_folder):
    out = tmp_path / "out"
    settings = BuildSettings(seq_len=256, keep_text=True, repos_per_shard=2)
    stats = build([corpus], out, str(sp_folder), settings)
    f = stats["stages"]["filter"]
    assert f["in"] == f["out"] + sum(f["dropped"].values())
    assert f["dropped"] == {"contaminated": 1, "invalid-encoding": 1, "binary": 1, "empty": 2, "exact-duplicate": 1,
                            "near-duplicate": 1, "vendored": 1, "generated": 1, "unsupported-language": 1,
                            "symlink": 1, "unreadable": 1}
    assert stats["stages"]["pack"]["out"] == f["out"]
    docs = [json.loads(line) for p in sorted((out / "text").glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert {d["repo"] for d in docs} == {"py", "java", "gots", "bad"}
    assert all(set(x) == {"path", "fim"} for d in docs for x in d["files"])
    sentinel_doc = next(d for d in docs if any(x["path"] == "sentinel.py" for x in d["files"]))
    shards = TokenShards(out)
    assert shards.tokens == stats["stages"]["tokenize"]["tokens"]
    seqs = list(shards.sequences(64))
    assert seqs and all(s.shape == (64,) for s in seqs) and max(int(s.max()) for s in seqs) < shards.vocab_size
    assert sentinel_doc["text"].count("<|fim_prefix|>") >= 2  # the literal text survives beside the sentinel
    n_files = sum(len(d["files"]) for d in docs)
    import numpy as np
    stream = np.concatenate(shards.arrays)
    n_fim = sum(x["fim"] != "none" for d in docs for x in d["files"])
    assert int((stream == 67).sum()) == n_fim and int((stream == 70).sum()) == n_files


def test_build_is_reproducible_for_any_number_of_tasks(corpus, tmp_path, sp_folder):
    settings = BuildSettings(seq_len=256, repos_per_shard=1, decontaminate=False)
    shards = {}
    for name, tasks, workers in (("a", 1, 1), ("c", 3, 2)):
        build([corpus], tmp_path / name, str(sp_folder), replace(settings, tasks=tasks, workers=workers))
        shards[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).glob("shard-*"))}
    assert len(shards["a"]) == 8 and shards["a"] == shards["c"]
    with pytest.raises(DataInputError, match="other inputs or settings"):
        build([corpus], tmp_path / "a", str(sp_folder), replace(settings, seq_len=512))


def test_jsonl_and_parquet_inputs(tmp_path, sp_folder):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [{"repo": "r1", "path": p, "content": t} for p, t in PY_REPO.items()]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist([{**r, "repo": "r2"} for r in rows]), tmp_path / "rows.parquet")
    stats = build([tmp_path / "rows.jsonl", tmp_path / "rows.parquet"], tmp_path / "o", str(sp_folder),
                  BuildSettings(seq_len=512, decontaminate=False))
    assert stats["input"]["repositories"] == 2
    assert stats["stages"]["filter"]["dropped"]["exact-duplicate"] >= len(PY_REPO) - 2


def test_bad_inputs_and_cli(tmp_path, sp_folder, capsys):
    (tmp_path / "rows.jsonl").write_text('{"repo": "r"}\n')
    with pytest.raises(DataInputError, match="rows.jsonl:1"):
        build([tmp_path / "rows.jsonl"], tmp_path / "o", str(sp_folder))
    assert main(["data", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "o2"),
                 "--tokenizer", str(sp_folder)]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert main(["data", "build", str(tmp_path), "--out", str(tmp_path / "o3"), "--tokenizer", str(sp_folder),
                 "--fim-rate", "2"]) == 1
    if shutil.which("sbatch") is None:
        assert main(["data", "build", str(tmp_path), "--out", str(tmp_path / "o4"), "--tokenizer", str(sp_folder),
                     "--executor", "slurm"]) == 1
        assert "no sbatch on PATH" in capsys.readouterr().err and not (tmp_path / "o4").exists()
    with pytest.raises(ShardError, match="index.json"):
        TokenShards(tmp_path)


def test_cli_build(corpus, tmp_path, sp_folder, capsys):
    code = main(["data", "build", str(corpus / "py"), "--out", str(tmp_path / "cli"), "--tokenizer", str(sp_folder),
                 "--seq-len", "128", "--no-decontaminate", "--keep-text", "--tasks", "2", "--executor", "local"])
    assert code == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["input"]["repositories"] == 1 and os.path.exists(tmp_path / "cli" / "index.json")


@pytest.mark.parametrize("lang, source, expected", [
    ("python", "import os\nfrom pkg import util, core as c\nfrom .sib import x\n",
     ["os", "pkg/util", "pkg/core", "sib"]),
    ("java", "package a;\nimport com.acme.Util;\nimport static org.x.Y.z;\n", ["com/acme/Util", "org/x/Y/z"]),
    ("kotlin", "package a\nimport com.acme.Util\n", ["com/acme/Util"]),
    ("csharp", "using System.Text;\nusing Acme.Core;\n", ["System/Text", "Acme/Core"]),
    ("go", "package m\nimport (\n\t\"fmt\"\n\t\"example.com/m/util\"\n)\n", ["fmt", "example.com/m/util"]),
    ("javascript", "import a from './lib/a.js';\nconst b = require('../b');\n", ["lib/a.js", "b"]),
    ("typescript", "import { f } from './lib/format';\n", ["lib/format"]),
    ("c", "#include \"util/str.h\"\n#include <stdio.h>\n", ["util/str.h"]),
    ("cpp", "#include \"core/engine.hpp\"\n#include <vector>\n", ["core/engine.hpp"]),
    ("rust", "use crate::util::helper;\nmod parser;\n", ["util/helper", "parser"]),
])
def test_imports_in_every_language(lang, source, expected):
    from codegemma.data.languages import imports
    got = imports(lang, source)
    assert all(e in got for e in expected), got


def test_token_stream_windows_span_shards_without_concatenating():
    import numpy as np

    from codegemma.data.shards import TokenStream

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 1000, n).astype(np.uint32) for n in (5, 0, 17, 1, 40)]
    whole = np.concatenate(arrays)
    stream = TokenStream(arrays)
    assert stream.size == whole.size and stream.max() == int(whole.max())
    for start in range(whole.size):
        for length in (1, 3, 7, whole.size - start):
            if start + length <= whole.size:
                assert np.array_equal(stream.window(start, length), whole[start:start + length])
    with pytest.raises(IndexError):
        stream.window(whole.size - 2, 3)


def test_two_builds_in_one_process_use_their_own_tokenizers(tmp_path, sp_folder):
    """The pipeline's tokenizer cache is keyed by the tokenizer asked for."""
    from codegemma.testing import train_sentencepiece

    small = tmp_path / "small"
    train_sentencepiece(small, vocab_size=600)
    write_repo(tmp_path / "repos" / "py", PY_REPO)
    settings = BuildSettings(seq_len=256, decontaminate=False, fim=FimSettings(fim_rate=0.0))
    sizes = {}
    for name, tok_folder in (("big", sp_folder), ("small", small)):
        build([tmp_path / "repos"], tmp_path / name, str(tok_folder), settings)
        shards = TokenShards(tmp_path / name)
        tok = from_sentencepiece(tok_folder / "tokenizer.model")
        assert shards.vocab_size == tok.vocab_size
        util = tok.encode("pkg/util.py\n" + PY_REPO["pkg/util.py"], bos=False)
        stream = [int(t) for a in shards.arrays for t in a]
        assert any(stream[i:i + len(util)] == util for i in range(len(stream)))
        sizes[name] = shards.vocab_size
    assert sizes == {"big": 1024, "small": 600}
