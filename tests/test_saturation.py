"""Saturation (#15 item 4): labelling and query generation keep a server's requests in flight across batch
boundaries (`rankdistill.pipelining`), and still commit batch by batch, in order, resumably.

The server is a real threaded HTTP server on 127.0.0.1 speaking the OpenAI /completions API (enough of
it for the capability probe, echo scoring and generation), answering slowly and logging when each
labelling request starts and ends. Each request's document carries a marker ``[[doc-N]]``, so the log
says which batch a request belongs to."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from http_helpers import ThreadedServer
from rankdistill.data.types import Document
from rankdistill.errors import RankdistillError
from rankdistill.labels import LabelStore, label_candidates
from rankdistill.llm import OpenAICompatLLM
from rankdistill.pipelining import lookahead_for, run_ahead
from rankdistill.teachers import QueryLikelihoodTeacher
from rankdistill.teachers.base import Candidate
from rankdistill.teachers.querygen.generator import QueryGenerator

MARK = re.compile(r"\[\[doc-(\d+)\]\]")
B, C = 6, 3  # batch size, requests in flight (the backend's concurrency)
N_PAIRS = 30  # five batches


def logprob(*parts: str) -> float:
    """A deterministic log-probability of a token in its context (whatever the order of requests)."""
    h = int(hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8], 16)
    return -((h % 5000) / 1000.0) - 0.01


class SlowServer(ThreadedServer):
    """An OpenAI-compatible stand-in: /models, /completions (echo log-probabilities, top log-probabilities,
    generation); /chat and /props answer 404. Requests whose prompt holds ``[[doc-N]]`` sleep
    `delay(N)` seconds and are logged as (start, end, N). With `fail_from`, the fail_from-th such request
    and the ones after answer HTTP 400 (not retried); with `on_request`, it is called with the count of
    such requests as each starts."""

    def __init__(self, delay=lambda n: 0.05 + 0.05 * (n % 3)):
        self.delay = delay
        self.lock = threading.Lock()
        self.log: list[tuple[float, float, int]] = []
        self.active = 0
        self.peak = 0
        self.started = 0
        self.fail_from: int | None = None
        self.on_request = None
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self.send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
                else:
                    self.send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not self.path.endswith("/completions") or "chat" in self.path:
                    self.send(404, {"error": "not found"})
                    return
                prompt = str(body.get("prompt", ""))
                m = MARK.search(prompt)
                if m is None:  # the capability probe
                    self.send(200, srv.answer(body, prompt))
                    return
                n = int(m.group(1))
                with srv.lock:
                    srv.started += 1
                    count = srv.started
                    srv.active += 1
                    srv.peak = max(srv.peak, srv.active)
                    t0 = time.monotonic()
                if srv.on_request is not None:
                    srv.on_request(count)
                failing = srv.fail_from is not None and count >= srv.fail_from
                time.sleep(srv.delay(n))
                payload = {"error": "injected failure"} if failing else srv.answer(body, prompt)
                with srv.lock:
                    srv.active -= 1
                    srv.log.append((t0, time.monotonic(), n))
                self.send(400 if failing else 200, payload)

        self.serve(Handler, "/v1")
        self.server.daemon_threads = True

    @staticmethod
    def answer(body: dict, prompt: str) -> dict:
        if body.get("echo"):
            tokens = [(m.start(), m.group()) for m in re.finditer(r"\s*\S+", prompt)]
            lps = [None] + [logprob(tokens[i - 1][1], t) for i, (_, t) in enumerate(tokens) if i]
            lp = {
                "tokens": [t for _, t in tokens],
                "text_offset": [o for o, _ in tokens],
                "token_logprobs": lps,
                "top_logprobs": None,
            }
            return {"choices": [{"text": prompt, "index": 0, "logprobs": lp, "finish_reason": "length"}]}
        m = MARK.search(prompt)
        text = f" what is document {m.group(1)} about?" if m else " Paris"
        words = text.split()
        lp = {
            "tokens": words,
            "token_logprobs": [logprob(prompt[-40:], w) for w in words],
            "top_logprobs": [{w: logprob(prompt[-40:], w), "x": -9.0} for w in words],
            "text_offset": list(range(len(words))),
        }
        return {
            "choices": [{"text": text, "index": 0, "logprobs": lp, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(words)},
        }

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self.peak = self.active = self.started = 0


@pytest.fixture
def server():
    with SlowServer() as srv:
        yield srv


def candidates(n: int = N_PAIRS) -> list[Candidate]:
    return [
        Candidate(
            f"q{i // 5}", f"what about topic {i // 5}", f"d{i}", f"Passage [[doc-{i}]] about topic {i // 5}."
        )
        for i in range(n)
    ]


def teacher(url: str) -> QueryLikelihoodTeacher:
    llm = OpenAICompatLLM(url, "stub", concurrency=C, backoff=0.01, max_backoff=0.05, max_retries=1)
    t = QueryLikelihoodTeacher(llm, batch_size=B)
    t.identity()  # probes the server now, before the measured requests
    return t


def stored(path: Path) -> list[tuple[str, object]]:
    with LabelStore(path) as st:
        return [(r.key, r.value) for r in st.iter_records()]


def boundaries(log: list[tuple[float, float, int]], size: int) -> list[dict]:
    """For each boundary between batch k and k+1: the requests of batch k+1 in flight when the last
    request of batch k ended, and the most requests in flight at once with both batches among them."""
    by_batch: dict[int, list[tuple[float, float, int]]] = {}
    for row in log:
        by_batch.setdefault(row[2] // size, []).append(row)
    events = sorted([(s, 1, n) for s, _, n in log] + [(e, -1, n) for _, e, n in log])
    out = []
    for k in sorted(by_batch)[:-1]:
        last_end = max(e for _, e, _ in by_batch[k])
        next_in_flight = sum(s < last_end < e for s, e, _ in by_batch.get(k + 1, []))
        active: set[int] = set()
        both = 0
        for _, step, n in events:
            (active.add if step > 0 else active.discard)(n)
            batches = {m // size for m in active}
            if {k, k + 1} <= batches:
                both = max(both, len(active))
        out.append({"next_in_flight": next_in_flight, "both_batches_in_flight": both})
    return out


def test_only_io_bound_things_look_ahead(server, monkeypatch):
    from rankdistill.teachers.ensemble import FirstStageTeacher

    t = teacher(server.url)
    assert t.io_bound and t.llm.io_bound and lookahead_for(t) == 1
    assert lookahead_for(FirstStageTeacher()) == 0  # in-process teachers keep the plain loop
    monkeypatch.setenv("RANKDISTILL_LOOKAHEAD", "0")
    assert lookahead_for(t) == 0
    monkeypatch.setenv("RANKDISTILL_LOOKAHEAD", "x")
    with pytest.raises(RankdistillError, match="RANKDISTILL_LOOKAHEAD"):
        lookahead_for(t)


def test_requests_stay_in_flight_across_batches_and_labels_are_the_same(server, tmp_path):
    t = teacher(server.url)
    server.reset()
    plain = label_candidates(t, candidates(), tmp_path / "plain.sqlite", show_progress=False, lookahead=0)
    gaps = boundaries(server.log, B)
    assert len(gaps) == N_PAIRS // B - 1
    # one batch after another: the server has nothing of the next batch when a batch's last request ends
    assert all(g["next_in_flight"] == 0 and g["both_batches_in_flight"] == 0 for g in gaps), gaps

    server.reset()
    ahead = label_candidates(t, candidates(), tmp_path / "ahead.sqlite", show_progress=False)  # io_bound: 1
    gaps = boundaries(server.log, B)
    assert server.peak <= C  # the batches in flight share the backend's concurrency
    # the next batch is already in flight when a batch's last request ends, and both fill the C slots
    assert all(g["next_in_flight"] >= 1 for g in gaps), gaps
    assert all(g["both_batches_in_flight"] == C for g in gaps), gaps
    # the oldest batch goes first: batch k+1 only takes the slots batch k leaves idle at its tail
    starts: dict[int, list[float]] = {}
    for s, _, n in server.log:
        starts.setdefault(n // B, []).append(s)
    assert all(max(starts[k]) < min(starts[k + 1]) for k in range(len(starts) - 1)), starts

    assert [lab.to_json() for lab in ahead] == [lab.to_json() for lab in plain]
    assert stored(tmp_path / "ahead.sqlite") == stored(tmp_path / "plain.sqlite")  # same rows, same order
    assert len(stored(tmp_path / "plain.sqlite")) == N_PAIRS


def test_a_failure_mid_run_keeps_whole_batches_and_resumes_to_the_same_store(server, tmp_path):
    t = teacher(server.url)
    label_candidates(t, candidates(), tmp_path / "ref.sqlite", show_progress=False, lookahead=0)
    ref = stored(tmp_path / "ref.sqlite")

    server.reset()
    server.fail_from = 2 * B + 2  # a request of the third batch
    with pytest.raises(RankdistillError, match="run again to resume"):
        label_candidates(t, candidates(), tmp_path / "run.sqlite", show_progress=False, lookahead=1)
    part = stored(tmp_path / "run.sqlite")
    assert len(part) % B == 0 and part == ref[: len(part)]  # whole batches, in order
    # at most the batches in flight were lost: the failing one and the one computed ahead of it; the
    # fifth batch was never started
    assert len(part) == 2 * B and server.started <= 4 * B

    server.fail_from = None
    server.reset()
    label_candidates(t, candidates(), tmp_path / "run.sqlite", show_progress=False, lookahead=1)
    assert stored(tmp_path / "run.sqlite") == ref
    assert server.started == N_PAIRS - len(part)  # only the missing batches were computed


SCRIPT = """
import sys
from rankdistill.labels import label_candidates
from rankdistill.llm import OpenAICompatLLM
from rankdistill.teachers import QueryLikelihoodTeacher
from rankdistill.teachers.base import Candidate

url, store, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
llm = OpenAICompatLLM(url, "stub", concurrency=3)
cands = [
    Candidate(f"q{i // 5}", f"what about topic {i // 5}", f"d{i}", f"Passage [[doc-{i}]] about topic {i // 5}.")
    for i in range(n)
]
label_candidates(QueryLikelihoodTeacher(llm, batch_size=6), cands, store, show_progress=False)
"""


def test_sigkill_mid_run_resumes_to_the_uninterrupted_store(server, tmp_path):
    t = teacher(server.url)
    label_candidates(t, candidates(), tmp_path / "ref.sqlite", show_progress=False, lookahead=0)
    ref = stored(tmp_path / "ref.sqlite")

    script = tmp_path / "label.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RANKDISTILL_PROGRESS": "0"}
    proc = subprocess.Popen(
        [sys.executable, str(script), server.url, str(tmp_path / "run.sqlite"), str(N_PAIRS)], env=env
    )

    def kill(count: int) -> None:
        if count == 2 * B + 3:  # in the third batch, with the fourth in flight
            os.kill(proc.pid, signal.SIGKILL)

    server.reset()
    server.on_request = kill
    assert proc.wait(timeout=120) == -signal.SIGKILL
    server.on_request = None
    part = stored(tmp_path / "run.sqlite")
    assert len(part) % B == 0 and part == ref[: len(part)] and len(part) < N_PAIRS

    server.reset()
    label_candidates(t, candidates(), tmp_path / "run.sqlite", show_progress=False)
    assert stored(tmp_path / "run.sqlite") == ref
    assert server.started == N_PAIRS - len(part)


def test_query_generation_looks_ahead_and_journals_the_same_lines_in_order(server, tmp_path):
    llm = OpenAICompatLLM(server.url, "stub", concurrency=C)
    docs = [Document(f"d{i}", f"Passage [[doc-{i}]] about topic {i} and more words here") for i in range(24)]
    lines = {}
    for lookahead in (0, 1):
        server.reset()
        gen = QueryGenerator(llm, batch_size=B, lookahead=lookahead)
        raw, stats = gen.run(docs, tmp_path / f"j{lookahead}.jsonl", show_progress=False)
        assert stats.generated_documents == len(docs) and raw["d3"][0].text == " what is document 3 about?"
        gaps = boundaries(server.log, B)
        if lookahead:
            assert all(g["next_in_flight"] >= 1 for g in gaps), gaps
        else:
            assert all(g["next_in_flight"] == 0 for g in gaps), gaps
        lines[lookahead] = (tmp_path / f"j{lookahead}.jsonl").read_text().splitlines()
    assert lines[1] == lines[0] and len(lines[0]) == 1 + len(docs)
    assert QueryGenerator(llm, batch_size=B).lookahead is None  # None: from the backend (a server: 1)


def test_run_ahead_yields_in_order_and_bounds_the_work_in_flight():
    running, peak, lock = [0], [0], threading.Lock()

    def work(x: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01 * (3 - x % 3))  # later items finish first
        with lock:
            running[0] -= 1
        return x * x

    got = [(i, out) for i, out, _ in run_ahead(work, list(range(9)), lookahead=2)]
    assert got == [(i, i * i) for i in range(9)]
    assert peak[0] == 3  # the item being waited for and two ahead

    def fails(x: int) -> int:
        if x == 4:
            raise ValueError("four")
        return x

    from rankdistill.pipelining import ItemFailed

    seen = []
    with pytest.raises(ItemFailed) as info:
        for _i, out, _ in run_ahead(fails, list(range(9)), lookahead=1):
            seen.append(out)
    assert seen == [0, 1, 2, 3] and info.value.index == 4 and isinstance(info.value.cause, ValueError)
