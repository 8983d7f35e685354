"""BabelCode (google-research/babelcode): HumanEval and MBPP translated from Python into other languages.

`schema` infers typed test cases from a Python question (its reference signature and asserts);
`questions` converts BabelCode's raw HumanEval (with its fixes) and MBPP's test split; each language
module renders the prompt, the stop strings and the test driver; `batch` compiles several Java or
Kotlin programs per compiler call. Benchmarks are named
`bc-humaneval-LANG` and `bc-mbpp-LANG`; task ids are `HumanEval/N` and `MBPP/N`.
"""

from __future__ import annotations

from types import ModuleType

from ...errors import CodeGemmaError
from . import cpp, csharp, go, java, javascript, kotlin, python, rust
from .common import nonce, result
from .questions import Question, humaneval, mbpp

LANGUAGES: dict[str, ModuleType] = {"python": python, "javascript": javascript, "cpp": cpp, "java": java, "go": go,
                                    "rust": rust, "csharp": csharp, "kotlin": kotlin}
SETS = {"humaneval": humaneval, "mbpp": mbpp}
BENCHMARKS = tuple(f"bc-{s}-{lang}" for s in SETS for lang in LANGUAGES)


def split_name(benchmark: str) -> tuple[str, str]:
    """"bc-mbpp-javascript" -> ("mbpp", "javascript")."""
    _, questions, language = benchmark.split("-", 2)
    if questions not in SETS or language not in LANGUAGES:
        raise CodeGemmaError(f"unknown BabelCode benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    return questions, language


def questions(benchmark: str) -> list[Question]:
    return SETS[split_name(benchmark)[0]]()[0]


def prompt(benchmark: str, q: Question) -> str:
    """The prompt: MBPP's gets the `Examples:` block of its first two tests, as CodeGemma's model card shows."""
    questions_set, language = split_name(benchmark)
    return LANGUAGES[language].prompt(q, examples=questions_set == "mbpp")


# A completion returning one value, per language (after the prompt's signature): the stubs the checks and
# bench/bench_eval.py run.
STUBS = {"python": "\n    return {}\n", "javascript": "\n  return {};\n}}\n", "cpp": "\n    return {};",
         "java": "\n        return {};", "go": "\n    return {}\n}}\n", "rust": "\n    return {};",
         "csharp": "\n        return {};", "kotlin": "\n    return {}"}


def stub(language: str, q: Question, value: object) -> str:
    return STUBS[language].format(LANGUAGES[language].literal(value, q.returns))


def run(language: str, q: Question, prompt_text: str, completion: str, timeout: float,
        options: dict | None = None) -> dict:
    """Runs the driver on a completion in the sandbox (compiling it first where the language is compiled):
    status passed, failed, compile error, error or timeout. `options` go to the language's run_argv
    (C++'s precompiled_header=False, say, to measure without it)."""
    from ..sandbox import Limits, run_program

    lang = LANGUAGES[language]
    end = f"END-{nonce()}"
    files, argv = lang.run_argv(**(options or {}))
    source = lang.program(q, prompt_text, completion, end)
    limits = lang.limits(timeout) if hasattr(lang, "limits") else Limits(timeout=timeout)  # (kotlinc needs more)
    outcome = run_program({**files, lang.SOURCE_FILE: source}, argv, limits)
    compile_failed = getattr(lang, "compile_failed", None)
    return result(q, outcome, end, compile_failed is not None and compile_failed(outcome.returncode, outcome.stderr))
