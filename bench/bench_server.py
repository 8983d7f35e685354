"""Editor-like latency and throughput of `codegemma serve` on the default model.

Time to first token for a cold ~1500-token FIM request and for the next request after a one-character
edit, with the prefix cache and without it (a second server started with --no-prefix-cache, the
baseline), and after switching to another file and back (warm from a RAM snapshot with the prompt
cache); the keystroke storm (six requests 100 or 350 ms apart, each aborting the one before, as
editors do: latency of the newest beside the same request alone, goal <= 1.2x); then completion
throughput with 1, 4 and 8 concurrent clients, each an editor of its own (user agent, kept-alive
connection), prompts no measurement saw before (continuous batching: goal, 4 clients >= 2.5x one), with
speculative decoding (the default) and without it (--no-speculate: batching alone, on a warmed-up server).

Last, beside llama.cpp's server as llama-cpp-python ships it (`python -m llama_cpp.server`, one sequence at
a time) on the same GGUF file and thread count: the same OpenAI /v1/completions requests to both.

    python bench/bench_server.py [--model default] [--threads 2] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, threads: int, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "codegemma.cli", "serve", "--model", model, "--port", str(port),
                             "--queue", "64", *extra], env=env, stderr=subprocess.DEVNULL)
    return proc, ready(proc, f"http://127.0.0.1:{port}", "/health")


def ready(proc: subprocess.Popen, url: str, probe: str) -> str:
    """Waits until GET url+probe answers 200 (two minutes at most); returns url."""
    for _ in range(600):
        try:
            if httpx.get(f"{url}{probe}", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server at {url} did not start")


def editor_request(edit: bool) -> dict:
    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text(encoding="utf-8")
    cursor = 5600  # about 1100 tokens of prefix and 400 of suffix (1500 in all)
    prefix, suffix = text[:cursor], text[cursor:cursor + 1700]
    if edit:
        prefix = prefix[:-40] + "#" + prefix[-40:]  # one character typed a line above the cursor
    return {"input_prefix": prefix, "input_suffix": suffix, "n_predict": 16, "stream": True}


def other_file() -> dict:
    text = (Path(sysconfig.get_paths()["stdlib"]) / "argparse.py").read_text(encoding="utf-8")
    return {"input_prefix": text[:5600], "input_suffix": text[5600:7300], "n_predict": 16, "stream": True}


def ttft(url: str, body: dict) -> tuple[float, int]:
    t = time.perf_counter()
    first = None
    evaluated = 0
    with httpx.stream("POST", f"{url}/infill", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                first = first or time.perf_counter() - t
                data = json.loads(line[6:])
                evaluated = data.get("tokens_evaluated", evaluated)
    return first or float("nan"), evaluated


def answer_seconds(url: str, body: dict) -> float:
    t = time.perf_counter()
    r = httpx.post(f"{url}/infill", json={**body, "stream": False}, headers={"User-Agent": "storm"}, timeout=300)
    r.raise_for_status()
    return time.perf_counter() - t


def storm(url: str, interval: float, keystrokes: int = 6) -> tuple[float, float]:
    """(seconds for the newest of `keystrokes` requests, seconds for that request alone); before each,
    another file is served (with the prompt cache, both then start from the RAM snapshot of this one)."""
    other = {**editor_request(False), "input_prefix": "import json\n" * 200}
    base = editor_request(False)
    bodies = [{**base, "input_prefix": base["input_prefix"] + "x" * k, "stream": False} for k in range(keystrokes)]
    answer_seconds(url, other)
    alone = answer_seconds(url, bodies[-1])
    answer_seconds(url, other)
    port = int(url.rsplit(":", 1)[1])
    sock = None
    for body in bodies[:-1]:
        if sock is not None:
            sock.close()  # the editor aborts the previous request
        sock = socket.create_connection(("127.0.0.1", port))
        data = json.dumps(body).encode()
        sock.sendall(f"POST /infill HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nUser-Agent: storm\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        time.sleep(interval)
    sock.close()
    return answer_seconds(url, bodies[-1]), alone


RUNS = itertools.count()


def throughput(url: str, clients: int, route: str = "/completion", per_client: int = 4) -> float:
    """Completion tokens per second of `clients` concurrent clients, each an editor of its own (its own user
    agent and kept-alive connection, as editors keep theirs) sending per_client 32-token requests one after
    another, on `route` (llama.cpp's /completion or OpenAI's /v1/completions); prompts no measurement saw."""
    run = next(RUNS)
    https = [httpx.Client(base_url=url, headers={"User-Agent": f"bench-client-{c}"}, timeout=600)
             for c in range(clients)]

    def client(c: int) -> int:
        tokens = 0
        for i in range(per_client):
            prompt = f"def function_{run}_{c}_{i}(x):\n    "
            if route == "/completion":
                tokens += https[c].post(route, json={"prompt": prompt, "n_predict": 32}).json()["tokens_predicted"]
            else:
                body = {"model": "codegemma", "prompt": prompt, "max_tokens": 32, "temperature": 0}
                tokens += https[c].post(route, json=body).json()["usage"]["completion_tokens"]
        return tokens

    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - t
    for http in https:
        http.close()
    return tokens / elapsed


def start_llama_cpp(gguf: Path, threads: int, ctx: int) -> tuple[subprocess.Popen, str] | None:
    """llama-cpp-python's server on the same file, or None where it is not installed (make bench installs it)."""
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        print(f"llama.cpp server baseline skipped: {exc}", file=sys.stderr)
        return None
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads),
                             "--n_ctx", str(ctx)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return proc, ready(proc, f"http://127.0.0.1:{port}", "/v1/models")


def openai_ttft(url: str, prompt: str) -> float:
    t = time.perf_counter()
    body = {"model": "codegemma", "prompt": prompt, "max_tokens": 16, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                return time.perf_counter() - t
    return float("nan")


def side_by_side(url: str) -> tuple[float, float, dict[int, float]]:
    """(cold TTFT, TTFT after a one-character edit, tokens/s per client count) over /v1/completions."""
    text = (Path(sysconfig.get_paths()["stdlib"]) / "difflib.py").read_text(encoding="utf-8")
    prefix = text[:5600]  # a file neither server has seen: cold for both
    openai_ttft(url, "import os\n")  # each server's first request pays its warm-up, not the measured one
    cold = openai_ttft(url, prefix)
    edited = openai_ttft(url, prefix[:-40] + "#" + prefix[-40:])
    return cold, edited, {c: throughput(url, c, "/v1/completions") for c in (1, 4, 8)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="default")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="bfloat16", help="as `make run` serves (bfloat16)")
    args = p.parse_args()
    rows = []
    for label, extra in (("prefix cache", ()), ("no prefix cache (baseline)", ("--no-prefix-cache",))):
        proc, url = start(args.model, args.threads, "--dtype", args.dtype, *extra)
        try:
            cold, n = ttft(url, editor_request(False))
            edits = [ttft(url, editor_request(i % 2 == 0))[0] for i in range(4)]
            ttft(url, other_file())  # the user switches to another file ...
            back = ttft(url, editor_request(True))[0]  # ... and back
            rows.append((label, n, cold, statistics.median(edits), back))
            if not extra:
                storms = {ms: storm(url, ms / 1000) for ms in (100, 350)}
                rates = {c: throughput(url, c) for c in (1, 4, 8)}
                ours = side_by_side(url)
        finally:
            proc.terminate()
            proc.wait()
    proc, url = start(args.model, args.threads, "--dtype", args.dtype, "--no-speculate")
    try:  # continuous batching alone: speculation speeds up the single stream most
        throughput(url, 1, per_client=1)  # the server's first requests pay its warm-up, not the measured ones
        plain_rates = {c: throughput(url, c) for c in (1, 4, 8)}
    finally:
        proc.terminate()
        proc.wait()
    from codegemma.sources import resolve

    source = resolve(args.model)
    baseline = None
    if source.kind == "gguf" and (started := start_llama_cpp(source.path, args.threads, 4096)):
        proc, url = started
        try:
            baseline = side_by_side(url)
        finally:
            proc.terminate()
            proc.wait()
    print(f"model {args.model}, {args.dtype}, {args.threads} threads\n")
    print("| server | prompt tokens | cold TTFT s | TTFT after a one-character edit s | TTFT back from another file s "
          "|")
    print("|---|---|---|---|---|")
    for label, n, cold, edit, back in rows:
        print(f"| {label} | {n} | {cold:.2f} | {edit:.2f} | {back:.2f} |")
    print("\n| keystrokes apart | newest answered s | same request alone s | ratio (goal <= 1.2) |")
    print("|---|---|---|---|")
    for ms, (newest, alone) in storms.items():
        print(f"| {ms} ms | {newest:.2f} | {alone:.2f} | {newest / alone:.2f}x |")
    print("\n| concurrent clients | completion tokens/s (all clients) | vs one client | with --no-speculate "
          "| vs one client |")
    print("|---|---|---|---|---|")
    for c, rate in rates.items():
        plain = plain_rates[c]
        print(f"| {c} | {rate:.1f} | {rate / rates[1]:.2f}x | {plain:.1f} | {plain / plain_rates[1]:.2f}x |")
    print("\n| /v1/completions, same file and threads | cold TTFT s | TTFT after an edit s | tokens/s 1 client "
          "| 4 clients | 8 clients |")
    print("|---|---|---|---|---|---|")
    for label, row in (("codegemma serve", ours), ("llama.cpp (llama-cpp-python server)", baseline)):
        if row is not None:
            cold, edited, r = row
            print(f"| {label} | {cold:.2f} | {edited:.2f} | {r[1]:.1f} | {r[4]:.1f} | {r[8]:.1f} |")


if __name__ == "__main__":
    main()
