"""The label store and the resumable runner, on a real SQLite file."""

from __future__ import annotations

import json
import sqlite3

import pytest

from rankdistill.errors import RankdistillError
from rankdistill.labels import LabelJob, LabelRecord, LabelStore, run_jobs

TEACHER = {"teacher": "test", "model": "char-stats"}


def char_stats(payloads):
    """A deterministic 'teacher': overlap of query and document characters."""
    out = []
    for q, d in payloads:
        overlap = len(set(q) & set(d)) / max(1, len(set(q) | set(d)))
        out.append({"score": overlap, "logits": [-overlap, overlap]})
    return out


def make_jobs(n, prefix="q"):
    jobs = []
    for i in range(n):
        q, d = f"{prefix} query {i % 7}", f"document number {i} about {i % 5}"
        jobs.append(
            LabelJob(
                LabelStore.key(TEACHER, None, q, d), (q, d), query_id=f"q{i % 7}", doc_ids=[f"d{i}"], query=q
            )
        )
    return jobs


def test_key_depends_on_every_part():
    base = LabelStore.key(TEACHER, {"name": "p", "version": "1"}, "q", "d")
    assert base == LabelStore.key(
        dict(reversed(list(TEACHER.items()))), {"version": "1", "name": "p"}, "q", "d"
    )
    others = {
        LabelStore.key({**TEACHER, "model": "other"}, {"name": "p", "version": "1"}, "q", "d"),
        LabelStore.key(TEACHER, {"name": "p", "version": "2"}, "q", "d"),
        LabelStore.key(TEACHER, {"name": "p", "version": "1"}, "q2", "d"),
        LabelStore.key(TEACHER, {"name": "p", "version": "1"}, "q", "d2"),
        LabelStore.key(TEACHER, {"name": "p", "version": "1"}, "q", ["d"]),
    }
    assert base not in others and len(others) == 5


def test_put_get_counts_export(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        tid = store.register_teacher("test", TEACHER)
        recs = [
            LabelRecord(
                "k1", "pointwise", "test", {"score": 1.5, "logits": [0.1, 0.2]}, ["d1"], "q1", "what", tid
            ),
            LabelRecord("k2", "listwise", "test", {"ranking": ["d2", "d1"]}, ["d1", "d2"], "q1", "what", tid),
        ]
        assert store.put_many(recs) == 2
        assert store.put_many(recs) == 0  # same keys: nothing duplicated
        assert len(store) == 2
        assert store.get_many(["k1", "k2", "nope"]) == {
            "k1": {"score": 1.5, "logits": [0.1, 0.2]},
            "k2": {"ranking": ["d2", "d1"]},
        }
        assert store.counts() == {("listwise", "test"): 1, ("pointwise", "test"): 1}
        assert "k1" in store and "nope" not in store
        n = store.export_jsonl(tmp_path / "out.jsonl", kind="pointwise")
        assert n == 1
        row = json.loads((tmp_path / "out.jsonl").read_text().strip())
        assert row["doc_ids"] == ["d1"] and row["value"]["logits"] == [0.1, 0.2] and row["query"] == "what"
        assert row["label"] == [0.1, 0.2] and "doc" not in row  # the logit pair is the training label
        assert store.teachers()[0]["identity"] == TEACHER
    # WAL mode persists in the file
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_put_many_is_all_or_nothing(tmp_path):
    with LabelStore(tmp_path / "l.sqlite") as store:
        tid = store.register_teacher("test", TEACHER)
        good = LabelRecord("a", "pointwise", "test", {"score": 1.0}, ["d"], "q", None, tid)
        bad = LabelRecord("b", "pointwise", "test", {"score": object()}, ["d"], "q", None, tid)
        with pytest.raises(TypeError):
            store.put_many([good, bad])
        assert len(store) == 0
        with pytest.raises(ValueError, match="kind"):
            store.put_many([LabelRecord("c", "pairwise", "test", {}, [], None, None, tid)])


def test_not_a_store(tmp_path):
    p = tmp_path / "junk.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RankdistillError, match="junk.sqlite"):
        LabelStore(p)


def test_runner_computes_once_and_resumes(tmp_path):
    jobs = make_jobs(50)
    calls = []

    def compute(payloads):
        calls.append(len(payloads))
        return char_stats(payloads)

    with LabelStore(tmp_path / "l.sqlite") as store:
        full = run_jobs(
            store,
            jobs,
            compute,
            kind="pointwise",
            teacher_name="test",
            teacher_identity=TEACHER,
            batch_size=8,
            show_progress=False,
        )
        assert full.stats.computed == 50 and full.stats.cached == 0 and calls == [8] * 6 + [2]
        again = run_jobs(
            store,
            jobs,
            compute,
            kind="pointwise",
            teacher_name="test",
            teacher_identity=TEACHER,
            batch_size=8,
            show_progress=False,
        )
        assert again.stats.computed == 0 and again.stats.cached == 50 and len(calls) == 7
        assert again.values == full.values

    # a run that dies in its 4th batch keeps the 3 batches before it; the next run computes the rest
    with LabelStore(tmp_path / "r.sqlite") as store:
        seen = []

        def dies(payloads):
            seen.append(1)
            if len(seen) == 4:
                raise RuntimeError("CUDA out of memory (pretend)")
            return char_stats(payloads)

        with pytest.raises(RankdistillError, match="24 labels are stored"):
            run_jobs(
                store,
                jobs,
                dies,
                kind="pointwise",
                teacher_name="test",
                teacher_identity=TEACHER,
                batch_size=8,
                show_progress=False,
            )
        assert len(store) == 24
        resumed = run_jobs(
            store,
            jobs,
            compute,
            kind="pointwise",
            teacher_name="test",
            teacher_identity=TEACHER,
            batch_size=8,
            show_progress=False,
        )
        assert resumed.stats.cached == 24 and resumed.stats.computed == 26
        assert resumed.values == full.values
        assert len(store) == 50


def test_runner_dedupes_keys_and_checks_lengths(tmp_path):
    jobs = make_jobs(10) + make_jobs(10)
    with LabelStore(tmp_path / "l.sqlite") as store:
        res = run_jobs(
            store,
            jobs,
            char_stats,
            kind="pointwise",
            teacher_name="t",
            teacher_identity=TEACHER,
            batch_size=4,
            show_progress=False,
        )
        assert res.stats.total == 10 and len(store) == 10
        with pytest.raises(RankdistillError, match="returned 1 values"):
            run_jobs(
                store,
                make_jobs(3, "other"),
                lambda p: [{"score": 0}],
                kind="pointwise",
                teacher_name="t",
                teacher_identity=TEACHER,
                show_progress=False,
            )
