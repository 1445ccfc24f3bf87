"""Speed of the three LLM backends on Gemma 3 270M (Q4_K_M GGUF), same prompts, same run.

Workloads on real scifact pairs (a test query and its relevant abstract, cut to `--doc-chars`):
  - query likelihood: score_continuations("Passage: {doc} ... Question:", " {query}")   -> pairs/s
  - monoT5-style logit pair: next_token_logits("Query: {q} Document: {d} Relevant:", [" true", " false"])
  - greedy generation from the query-likelihood prompt                                   -> tokens/s
Backends: llama.cpp in-process (the baseline), transformers (the same GGUF dequantised, bf16 where the
CPU has it), and the OpenAI-compatible HTTP backend against `python -m llama_cpp.server` on 127.0.0.1.

    nice -n 10 .venv/bin/python benchmarks/llm_backends.py            # writes benchmarks/results/llm_backends.json

The machine's load average is recorded with every number: on a shared CPU they move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("RANKDISTILL_DATA_DIR", REPO.parent / "shared" / "data"))
QL = "Passage: {doc}\nPlease write a question based on this passage.\nQuestion:"
MONO = "Query: {query} Document: {doc} Relevant:"


def scifact_pairs(n: int, doc_chars: int) -> list[tuple[str, str]]:
    """(query, document) for the first n scifact test queries with a judged relevant document."""
    from rankdistill.data.beir import read_beir_qrels, read_corpus, read_queries

    folder = DATA_DIR / "scifact"
    qrels = read_beir_qrels(folder / "qrels" / "test.tsv")
    queries = read_queries(folder / "queries.jsonl")
    corpus = read_corpus(folder / "corpus.jsonl.gz")
    pairs = []
    for qid in sorted(qrels.judgements, key=lambda q: int(q) if q.isdigit() else q):
        rel = [d for d, g in qrels.judgements[qid].items() if g > 0 and d in corpus]
        if qid in queries and rel:
            pairs.append((queries[qid], corpus[rel[0]].full_text[:doc_chars]))
        if len(pairs) == n:
            break
    return pairs


def timed(fn):
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    return out, dt, round((load0 + os.getloadavg()[0]) / 2, 1)


def measure(llm, pairs, gen_prompts: int, gen_tokens: int, ql_pairs: int) -> dict:
    ql = [(QL.format(doc=d), " " + q) for q, d in pairs[:ql_pairs]]
    mono = [MONO.format(query=q, doc=d) for q, d in pairs]
    llm.next_token_logits(mono[:1], [" true"])  # warm-up (allocations, first-call kernels)
    res: dict = {}
    if ql:
        _, dt, load = timed(lambda: llm.score_continuations(ql))
        res["query_likelihood"] = {
            "pairs": len(ql),
            "seconds": round(dt, 2),
            "pairs_per_s": round(len(ql) / dt, 2),
        }
        res["query_likelihood"]["load"] = load
    _, dt, load = timed(lambda: llm.next_token_logits(mono, [" true", " false"]))
    res["logit_pair"] = {"pairs": len(mono), "seconds": round(dt, 2), "pairs_per_s": round(len(mono) / dt, 2)}
    res["logit_pair"]["load"] = load
    prompts = [QL.format(doc=d) for _, d in pairs[:gen_prompts]]
    gens, dt, load = timed(lambda: llm.generate(prompts, max_tokens=gen_tokens, temperature=0.0))
    n = sum(g.n_tokens for g in gens)
    res["generation"] = {
        "prompts": len(prompts),
        "tokens": n,
        "seconds": round(dt, 2),
        "tokens_per_s": round(n / dt, 2),
        "load": load,
        "sample": gens[0].text[:120],
    }
    return res


def save(report: dict, out: Path) -> None:
    """Write what is measured so far (a slow backend later in the run cannot lose it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def start_server(gguf: Path, threads: int, n_ctx: int):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "rankdistill.llm.llamacpp_cpu",  # llama_cpp.server with this CPU's backend loaded
        "--model",
        str(gguf),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    cmd += ["--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    cmd += ["--model_alias", "gemma", "--verbose", "false"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--doc-chars", type=int, default=600)
    ap.add_argument("--gen-prompts", type=int, default=4)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument(
        "--threads", type=int, default=1, help="per backend (llama.cpp threads spin on a busy CPU)"
    )
    ap.add_argument("--hf-batch", type=int, default=8)
    ap.add_argument(
        "--http-pairs", type=int, default=4, help="pairs for the HTTP backend (a slow server here)"
    )
    ap.add_argument("--backends", default="llamacpp,hf,openai")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "llm_backends.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from rankdistill.llm import HFLLM, LlamaCppLLM, OpenAICompatLLM
    from rankdistill.models import gemma_gguf_path

    torch.set_num_threads(args.threads)
    gguf = gemma_gguf_path()
    pairs = scifact_pairs(args.pairs, args.doc_chars)
    report: dict = {
        "model": gguf.name,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": vars(args) | {"out": str(args.out)},
        "backends": {},
    }
    wanted = args.backends.split(",")
    if "llamacpp" in wanted:
        (llm, dt, _) = timed(lambda: LlamaCppLLM(gguf, n_ctx=1024, n_threads=args.threads))
        entry = {"load_s": round(dt, 2)} | measure(llm, pairs, args.gen_prompts, args.gen_tokens, len(pairs))
        report["backends"]["llamacpp"] = entry
        llm.close()
        print(json.dumps(report["backends"]["llamacpp"]), flush=True)
        save(report, args.out)
    if "hf" in wanted:
        (llm, dt, _) = timed(lambda: HFLLM(gguf, batch_size=args.hf_batch))
        entry = {"load_s": round(dt, 2), "dtype": llm.identity()["dtype"]}
        report["backends"]["hf"] = entry | measure(llm, pairs, args.gen_prompts, args.gen_tokens, len(pairs))
        llm.close()
        print(json.dumps(report["backends"]["hf"]), flush=True)
        save(report, args.out)
    if "openai" in wanted:
        proc, url = start_server(gguf, args.threads, 1024)
        try:
            # top_logprobs=1000: the candidates must be among the returned tokens, or the backend falls back
            # on echo scoring, which this server makes very slow (see echo_scoring)
            llm = OpenAICompatLLM(
                url, "gemma", concurrency=1, timeout=600, generation_logprobs=False, top_logprobs=1000
            )
            entry = {"server": "llama_cpp.server (llama-cpp-python)", "generation_logprobs": False}
            entry |= measure(llm, pairs[: args.http_pairs], args.gen_prompts, args.gen_tokens, ql_pairs=0)
            # echo scoring through llama-cpp-python's server sorts the whole vocabulary in Python for
            # every echoed token: time one short pair and report it per token
            q, d = pairs[0]
            (score,), dt, load = timed(lambda: llm.score_continuations([(QL.format(doc=d[:60]), " " + q)]))
            entry["echo_scoring"] = {
                "seconds": round(dt, 2),
                "continuation_tokens": score.n_tokens,
                "load": load,
            }
            entry["logit_pair"]["echo_fallbacks"] = llm.echo_fallbacks
            report["backends"]["openai"] = entry
            llm.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print(json.dumps(report["backends"]["openai"]), flush=True)
    base = report["backends"].get("llamacpp")
    if base:
        rel: dict = {}
        for name, b in report["backends"].items():
            rel[name] = {
                "logit_pair": round(b["logit_pair"]["pairs_per_s"] / base["logit_pair"]["pairs_per_s"], 2),
                "generation": round(b["generation"]["tokens_per_s"] / base["generation"]["tokens_per_s"], 2),
            }
            if "query_likelihood" in b:
                ql = b["query_likelihood"]["pairs_per_s"] / base["query_likelihood"]["pairs_per_s"]
                rel[name]["query_likelihood"] = round(ql, 2)
        report["relative_to_llamacpp"] = rel
    save(report, args.out)
    print(json.dumps(report.get("relative_to_llamacpp", {}), indent=2))


if __name__ == "__main__":
    main()
