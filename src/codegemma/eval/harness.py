"""Generate, score, summarise and report: the evaluation harness behind `codegemma eval`."""

from __future__ import annotations

import asyncio
import json
import math
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CodeGemmaError
from .data import Problem, load_problems
from .sandbox import Limits, run_python

if TYPE_CHECKING:
    from ..api import Options

RESULTS, SUMMARY, RUN = "results.jsonl", "summary.json", "run.json"
PARALLEL = 8  # samples decoded together by default: the quantized kernels' widest fast case holds 8 rows and drafts
# CodeGemma's published table (technical report, facts document section 7), pass@1 in percent.
PUBLISHED = {
    "columns": ["CodeGemma 2B", "2B 1.1", "7B", "7B-IT", "7B-IT 1.1"],
    "humaneval": [31.1, 37.8, 44.5, 56.1, 60.4],
    "mbpp": [43.6, 49.2, 56.2, 54.2, 55.2],
    "humaneval-infill-single": [78.41, 79.28, 76.09, 68.25, 77.44],
    "humaneval-infill-multi": [51.44, 50.99, 58.44, 20.05, 23.66],
    # BabelCode rows: CodeGemma 2B, 7B and 7B-IT (version 1.0) only (arXiv 2406.11409, table 3)
    "bc-humaneval-python": [21.7, None, 42.2, 48.4, None], "bc-mbpp-python": [38.6, None, 59.1, 62.0, None],
    "bc-humaneval-javascript": [21.7, None, 39.8, 46.0, None], "bc-mbpp-javascript": [45.3, None, 58.2, 61.4, None],
    "bc-humaneval-cpp": [24.2, None, 32.9, 42.2, None], "bc-mbpp-cpp": [47.1, None, 53.8, 56.7, None],
    "bc-humaneval-java": [29.2, None, 41.0, 48.4, None], "bc-mbpp-java": [41.8, None, 50.3, 57.3, None],
    "bc-humaneval-go": [20.5, None, 21.7, 28.6, None], "bc-mbpp-go": [45.6, None, 43.3, 46.2, None],
    "bc-humaneval-rust": [26.7, None, 34.1, 36.0, None], "bc-mbpp-rust": [45.3, None, 52.9, 53.5, None],
    "bc-humaneval-csharp": [10.6, None, 22.4, 26.7, None], "bc-mbpp-csharp": [28.7, None, 32.5, 41.2, None],
    "bc-humaneval-kotlin": [28.0, None, 39.8, 51.6, None], "bc-mbpp-kotlin": [46.8, None, 54.7, 59.9, None],
}
ROW_NAMES = {"humaneval": "HumanEval", "mbpp": "MBPP", "humaneval-infill-single": "HumanEval single-line infilling",
             "humaneval-infill-multi": "HumanEval multi-line infilling",
             "humaneval-infill-random-span": "HumanEval random-span infilling",
             "humaneval-infill-random-span-light": "HumanEval random-span infilling (light)",
             "bc-humaneval-python": "BC HumanEval Python", "bc-mbpp-python": "BC MBPP Python",
             "bc-humaneval-javascript": "BC HumanEval JavaScript", "bc-mbpp-javascript": "BC MBPP JavaScript",
             "bc-humaneval-cpp": "BC HumanEval C++", "bc-mbpp-cpp": "BC MBPP C++",
             "bc-humaneval-java": "BC HumanEval Java", "bc-mbpp-java": "BC MBPP Java",
             "bc-humaneval-go": "BC HumanEval Go", "bc-mbpp-go": "BC MBPP Go",
             "bc-humaneval-rust": "BC HumanEval Rust", "bc-mbpp-rust": "BC MBPP Rust",
             "bc-humaneval-csharp": "BC HumanEval C#", "bc-mbpp-csharp": "BC MBPP C#",
             "bc-humaneval-kotlin": "BC HumanEval Kotlin", "bc-mbpp-kotlin": "BC MBPP Kotlin"}


class EvalError(CodeGemmaError, ValueError):
    """Bad samples, a results folder from another run, or similar user errors."""


@dataclass(frozen=True)
class RunSettings:
    samples_per_task: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    max_tokens: int | None = None  # None: 512, or 128 for infilling
    limit: int | None = None  # first K problems only
    workers: int = 2
    timeout: float = 10.0
    seed: int = 0
    parallel: int | None = None  # samples decoded together as rows of the serving engine's passes (None: PARALLEL
    # where the model's rows are independent, so the text never depends on it, else 1)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def score_many(problems: list[Problem], completions: list[str], timeout: float) -> list[dict]:
    """Scores samples of one benchmark; BabelCode Java and Kotlin programs share one compiler call."""
    if len(problems) > 1 and problems[0].style == "babelcode":
        from .babelcode.batch import batched, run_batch

        if batched(problems[0].language):
            return run_batch(problems[0].language, [(p.question, p.prompt, c) for p, c in zip(problems, completions)],
                             timeout)
    return [score_one(p, c, timeout) for p, c in zip(problems, completions)]


def batch_size(problem: Problem) -> int:
    """How many samples score_many takes at once: BATCH for BabelCode Java and Kotlin, else one."""
    if problem.style == "babelcode":
        from .babelcode.batch import BATCH, batched

        if batched(problem.language):
            return BATCH
    return 1


def score_one(problem: Problem, completion: str, timeout: float) -> dict:
    if problem.style == "babelcode":
        from .babelcode import run as run_babelcode
        return run_babelcode(problem.language, problem.question, problem.prompt, completion, timeout)
    outcome = run_python(problem.program(completion), Limits(timeout=timeout))
    error = "" if outcome.passed else (outcome.stderr.strip()[-500:] or f"exit status {outcome.returncode}")
    return {"status": outcome.status, "passed": outcome.passed, "error": error, "duration": round(outcome.duration, 4)}


class ResultLog:
    """results.jsonl, appended line by line as samples are scored (so an interrupted run keeps what it
    finished): in the order scoring finished, which with several sandbox workers is not the task order."""

    def __init__(self, out: Path) -> None:
        self.path = out / RESULTS
        self.lock = threading.Lock()
        self.rows = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()] \
            if self.path.exists() else []
        self.done = {(r["task_id"], r["sample"]) for r in self.rows}

    def add(self, row: dict) -> None:
        with self.lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            self.rows.append(row)
            self.done.add((row["task_id"], row["sample"]))


def _check_same_run(out: Path, identity: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != identity:
            raise EvalError(f"{out} holds a different run ({previous}); use another --out")
    else:
        path.write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")


def _score_while(produce: Callable[[Callable[[str, int, str], None]], None], problems: dict[str, Problem],
                 log: ResultLog, settings: RunSettings) -> None:
    """Scores what `produce` delivers, on another thread, while produce keeps the calling one. A scoring failure
    (a broken toolchain, a sandbox that cannot start) stops the generation at its next delivery instead of
    letting it run on for hours with nothing scored; what was scored stays in the log for a resumed run."""
    done: queue.Queue = queue.Queue()
    failures: list[BaseException] = []

    def deliver(task_id: str, sample: int, completion: str) -> None:
        if failures:
            raise failures[0]
        done.put((task_id, sample, completion))

    def score() -> None:
        try:
            _score_stream(problems, iter(done.get, None), log, settings)
        except BaseException as exc:  # noqa: BLE001 (re-raised on the calling thread)
            failures.append(exc)

    scorer = threading.Thread(target=score, name="codegemma-eval-score", daemon=True)
    scorer.start()
    try:
        produce(deliver)
    finally:
        done.put(None)
        scorer.join()
    if failures:
        raise failures[0]


def _score_stream(problems: dict[str, Problem], samples: Iterable[tuple[str, int, str]], log: ResultLog,
                  settings: RunSettings) -> None:
    """Runs every (task_id, sample, completion) in parallel workers (in batches where score_many compiles several
    programs at once), logging each result as its batch lands."""
    def job(batch: list[tuple[str, int, str]]) -> None:
        results = score_many([problems[t] for t, _, _ in batch], [c for _, _, c in batch], settings.timeout)
        for (task_id, sample, completion), result in zip(batch, results):
            log.add({"task_id": task_id, "sample": sample, "completion": completion, **result})

    with ThreadPoolExecutor(max(1, settings.workers)) as pool:
        futures, batch = [], []
        for item in samples:
            batch.append(item)
            if len(batch) >= batch_size(problems[item[0]]):
                futures.append(pool.submit(job, batch))
                batch = []
            finished = [f for f in futures if f.done()]
            for future in finished:
                future.result()  # a failed batch raises now, not after every sample has been generated
            futures = [f for f in futures if f not in finished]
        if batch:
            futures.append(pool.submit(job, batch))
        for future in futures:
            future.result()


FIM, LEFT_TO_RIGHT_LINE, LEFT_TO_RIGHT = "fim", "left-to-right, first line", "left-to-right, stop at the suffix"


def infill_protocol(cg, problem: Problem) -> str:
    """How a model fills a hole: "fim" (native), else left-to-right, cut to one line for single-line sets.

    A model without FIM tokens cannot know where the middle ends; the usual left-to-right baseline for
    single-line infilling (as in the InCoder and SantaCoder papers) keeps its first line.
    """
    if cg.fim_native:
        return FIM
    return LEFT_TO_RIGHT_LINE if problem.single_line else LEFT_TO_RIGHT


def request(cg, problem: Problem, sample: int, settings: RunSettings) -> tuple[list[int], Options, bool]:
    """The prompt ids and options of one sample, and whether only the first line of the text counts."""
    from ..api import Options

    line_only = False
    if problem.infill:
        fim = cg.fim_ids(problem.prompt, problem.suffix)
        ids, stop_ids, stops = fim.ids, fim.stop_ids, fim.stop
        max_tokens = settings.max_tokens or 128
        line_only = infill_protocol(cg, problem) == LEFT_TO_RIGHT_LINE
        if line_only:
            stops = (*stops, "\n")
    else:
        ids, stop_ids, stops = cg.tokenizer.encode(problem.prompt), (), problem.stops
        max_tokens = settings.max_tokens or 512
    opts = Options(max_tokens=max_tokens, temperature=settings.temperature,
                   top_p=settings.top_p if settings.temperature else 1.0, seed=settings.seed + sample,
                   stop=tuple(stops), stop_ids=tuple(stop_ids))
    return list(ids), opts, line_only


def _completion(text: str, line_only: bool) -> str:
    return text.split("\n")[0] + "\n" if line_only else text  # the middle is a whole line, with its end


def generate(cg, todo: list[tuple[Problem, int]], settings: RunSettings,
             deliver: Callable[[str, int, str], None]) -> None:
    """Decodes the samples in the serving engine, `settings.parallel` at a time as rows of its passes (where
    the model's rows are independent, as with the quantized kernels, each row's text is the one it gets alone,
    so --parallel changes the speed and never the text), calling deliver(task_id, sample, completion) as each
    ends. The engine runs on the calling thread, the one that loaded the model (see Engine.run); the requests
    are fed and collected from another."""
    from ..server.engine import Engine, Job

    work = [(p, s, *request(cg, p, s, settings)) for p, s in todo]
    ctx = min(cg.config.max_position_embeddings, max(len(ids) + opts.max_tokens for _, _, ids, opts, _ in work))
    engine = Engine(cg, ctx=ctx, parallel=settings.parallel or 1, prefix_cache=False, queue_depth=len(work),
                    thread=False)
    failures: list[BaseException] = []

    async def collect(job: Job, problem: Problem, sample: int, line_only: bool) -> None:
        text = []
        while (event := await job.events.get())[0] != "done":
            if event[0] == "error":
                raise EvalError(f"{problem.task_id}: generation failed: {event[1]}")
            text.append(event[1])
        deliver(problem.task_id, sample, _completion("".join(text), line_only))

    async def feed() -> None:
        loop = asyncio.get_running_loop()
        jobs = [(Job(ids, opts, loop), p, s, line_only) for p, s, ids, opts, line_only in work]
        engine.submit(*(j for j, *_ in jobs))
        await asyncio.gather(*(collect(*j) for j in jobs))

    def feeder() -> None:
        try:
            asyncio.run(feed())
        except BaseException as exc:  # noqa: BLE001 (re-raised on the calling thread)
            failures.append(exc)
        finally:
            engine.close()

    thread = threading.Thread(target=feeder, name="codegemma-eval-feed", daemon=True)
    thread.start()
    engine.run()
    thread.join()
    if failures:
        raise failures[0]


def run(benchmark: str, cg, out: str | Path, settings: RunSettings = RunSettings(),
        data_dir: str | Path | None = None) -> dict:
    """Generates and scores; resumes an interrupted run in the same folder without redoing samples."""
    out = Path(out)
    if settings.parallel is None:
        settings = replace(settings, parallel=PARALLEL if cg.model.rows_independent() else 1)
    problems = load_problems(benchmark, data_dir)[:settings.limit]
    identity = {"benchmark": benchmark, "model": cg.name, "temperature": settings.temperature,
                "samples_per_task": settings.samples_per_task, "max_tokens": settings.max_tokens}
    protocol = infill_protocol(cg, problems[0]) if problems and problems[0].infill else None
    if protocol and protocol != FIM:  # (run folders from before protocols were recorded stay resumable)
        identity["infill_protocol"] = protocol
    _check_same_run(out, identity)
    log = ResultLog(out)
    by_id = {p.task_id: p for p in problems}

    todo = [(p, s) for p in problems for s in range(settings.samples_per_task) if (p.task_id, s) not in log.done]
    if todo:
        _score_while(lambda deliver: generate(cg, todo, settings, deliver), by_id, log, settings)
    return write_summary(out, benchmark, cg.name, problems, log.rows, settings, protocol)


def read_samples(path: str | Path, problems: dict[str, Problem]) -> list[tuple[str, int, str]]:
    """JSONL with task_id and completion per line; several lines per task are several samples."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read {path}: {exc}") from exc
    counts: Counter[str] = Counter()
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            task_id, completion = row["task_id"], row["completion"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EvalError(f"{path}:{n}: expected a JSON object with task_id and completion ({exc})") from exc
        if not isinstance(task_id, str) or not isinstance(completion, str):
            raise EvalError(f"{path}:{n}: task_id and completion must be strings")
        if task_id not in problems:
            raise EvalError(f"{path}:{n}: unknown task_id {task_id!r} for this benchmark")
        out.append((task_id, counts[task_id], completion))
        counts[task_id] += 1
    if not out:
        raise EvalError(f"{path}: no samples")
    return out


def score(benchmark: str, samples: str | Path, out: str | Path, settings: RunSettings = RunSettings(),
          data_dir: str | Path | None = None, model: str = "samples") -> dict:
    out = Path(out)
    problems = load_problems(benchmark, data_dir)
    by_id = {p.task_id: p for p in problems}
    items = read_samples(samples, by_id)
    _check_same_run(out, {"benchmark": benchmark, "samples": str(Path(samples).resolve())})
    log = ResultLog(out)
    _score_stream(by_id, [i for i in items if (i[0], i[1]) not in log.done], log, settings)
    scored = [p for p in problems if any(r["task_id"] == p.task_id for r in log.rows)]
    return write_summary(out, benchmark, model, scored, log.rows, settings)


def write_summary(out: Path, benchmark: str, model: str, problems: list[Problem], rows: list[dict],
                  settings: RunSettings, protocol: str | None = None) -> dict:
    per_task: dict[str, list[bool]] = {p.task_id: [] for p in problems}
    for r in rows:
        if r["task_id"] in per_task:
            per_task[r["task_id"]].append(r["passed"])
    n_min = min((len(v) for v in per_task.values()), default=0)
    summary = {"benchmark": benchmark, "model": model, "problems": len(per_task),
               "samples": sum(len(v) for v in per_task.values()),
               "counts": dict(Counter(r["status"] for r in rows if r["task_id"] in per_task)),
               "settings": asdict(settings)}
    if protocol:
        summary["infill_protocol"] = protocol
    for k in (1, 10, 100):
        if n_min >= k:
            summary[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per_task.values()) / max(1, len(per_task))
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def report(dirs: Iterable[str | Path]) -> str:
    """A markdown table laid out like the published one: benchmarks as rows, models as columns."""
    summaries = []
    for d in dirs:
        path = Path(d) / SUMMARY
        if not path.is_file():
            raise EvalError(f"{d}: no {SUMMARY} (run `codegemma eval run` or `eval score` first)")
        summaries.append(json.loads(path.read_text(encoding="utf-8")))
    models = list(dict.fromkeys(s["model"] for s in summaries))
    benches = [b for b in ROW_NAMES if any(s["benchmark"] == b for s in summaries)]
    header = ["benchmark", *models, *PUBLISHED["columns"]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for b in benches:
        cells = []
        for m in models:
            hit = [s for s in summaries if s["benchmark"] == b and s["model"] == m]
            cells.append(f"{100 * hit[-1]['pass@1']:.2f} ({hit[-1]['problems']})" if hit and "pass@1" in hit[-1]
                         else "")
        published = [("" if v is None else f"{v:.2f}") for v in PUBLISHED.get(b, [])]
        published = published or [""] * len(PUBLISHED["columns"])
        lines.append("| " + " | ".join([ROW_NAMES[b], *cells, *published]) + " |")
    return "\n".join(lines) + "\n\npass@1 in percent; (n) = problems scored. Published: CodeGemma technical report.\n"
