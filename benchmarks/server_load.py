"""Load test of `rankdistill serve` on 127.0.0.1: N concurrent clients for a bounded time.

Starts the real server (`rankdistill serve`, a subprocess) on a free port, then runs `--clients`
asyncio clients that each send POST /rerank requests back to back (a scifact test query and its BM25
top `--docs` documents) for `--duration` seconds; requests still in flight then finish (each has a
`--timeout`). Reports errors (any non-200 or transport failure), throughput, latency percentiles,
the server's micro-batching statistics and its memory (RSS) at start and at end. Afterwards it sends a
malformed body and an oversized request and checks the server still answers.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/server_load.py --clients 32 --duration 60
    # JSON: benchmarks/results/server_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import build_probe_model, scifact_pairs  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> dict[str, float]:
    """Resident memory now (VmRSS) and its peak so far (VmHWM) of a process, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": out.get("VmRSS"), "peak_rss_mb": out.get("VmHWM")}


async def _client(client, url, bodies, start_index, stop_at, timeout, log):
    i = start_index
    while time.perf_counter() < stop_at:
        body = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        try:
            r = await client.post(url, json=body, timeout=timeout)
            ok = r.status_code == 200 and len(r.json()["results"]) == len(body["documents"])
            log.append((t0, time.perf_counter() - t0, ok, r.status_code))
        except Exception as exc:  # noqa: BLE001 - a transport failure is an error to count, not a crash
            log.append((t0, time.perf_counter() - t0, False, type(exc).__name__))


async def _load(base, bodies, clients, duration, timeout):
    log: list = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits) as client:
        stop_at = time.perf_counter() + duration
        t0 = time.perf_counter()
        await asyncio.gather(
            *[_client(client, f"{base}/rerank", bodies, c, stop_at, timeout, log) for c in range(clients)]
        )
        wall = time.perf_counter() - t0
    return log, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="Student / cross-encoder folder (default: the MiniLM probe model).")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument(
        "--duration", type=float, default=60.0, help="Seconds during which clients send requests."
    )
    ap.add_argument(
        "--docs", type=int, default=10, help="Documents per request (BM25 top of a scifact query)."
    )
    ap.add_argument("--queries", type=int, default=64, help="Distinct scifact test queries to cycle through.")
    ap.add_argument("--timeout", type=float, default=300.0, help="Per-request timeout (seconds).")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", default=str(HERE / "results" / "server_load.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from rankdistill.data.datasets import cache_dir

    model = args.model or str(build_probe_model(cache_dir() / "bench" / "minilm-scifact-probe"))
    data = scifact_pairs(args.queries, k=args.docs, seed=1)
    bodies = [{"query": q, "documents": [{"id": d, "text": t} for d, t in docs]} for _, q, docs in data]

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("rankdistill")
    cmd = [
        str(exe),
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--threads",
        str(args.threads),
        "--max-documents",
        "1000",
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {server.stdout.read()}")
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise SystemExit("server did not start in 300 s")
            time.sleep(0.5)
        httpx.post(f"{base}/rerank", json=bodies[0], timeout=args.timeout)  # warm-up
        mem_start = _rss_mb(server.pid)
        load_start = round(os.getloadavg()[0], 2)
        log, wall = asyncio.run(_load(base, bodies, args.clients, args.duration, args.timeout))
        mem_end = _rss_mb(server.pid)
        health = httpx.get(f"{base}/health", timeout=30).json()
        # the server must survive bad requests after the load
        bad = httpx.post(
            f"{base}/rerank", content=b"{not json", timeout=30, headers={"Content-Type": "application/json"}
        ).status_code
        big = httpx.post(
            f"{base}/rerank", json={"query": "q", "documents": ["x"] * 1001}, timeout=30
        ).status_code
        alive = httpx.get(f"{base}/health", timeout=30).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    lat = np.asarray([x[1] for x in log])
    ok = [x for x in log if x[2]]
    errors = [x for x in log if not x[2]]
    pairs = len(ok) * args.docs
    result = {
        "benchmark": "server_load",
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/server_load.py " + " ".join(sys.argv[1:]),
        "model": model if args.model else "minilm-scifact-probe (see reranker_speed.json)",
        "server": health["model"],
        "clients": args.clients,
        "duration_s": args.duration,
        "wall_s_including_drain": round(wall, 2),
        "docs_per_request": args.docs,
        "requests": len(log),
        "errors": len(errors),
        "error_kinds": sorted({str(x[3]) for x in errors}),
        "requests_per_s": round(len(ok) / wall, 3),
        "pairs_per_s": round(pairs / wall, 2),
        "latency_ms": {
            p: round(float(np.percentile(lat, q)) * 1000, 1)
            for p, q in (("p50", 50), ("p95", 95), ("max", 100))
        }
        if len(lat)
        else {},
        "batching": health["batching"],
        "memory_start": mem_start,
        "memory_end": mem_end,
        "after_load": {"malformed_json_status": bad, "too_many_documents_status": big, "health_ok": alive},
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_avg_1m_at_start": load_start,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
