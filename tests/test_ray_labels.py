"""Teacher labelling on a local Ray instance gives the same label store as the single-process run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.data]


def _spec(cache: Path) -> dict:
    # BM25 fused with MiniLM cosine (the best offline teacher); each run gets its own embedding cache so
    # the Ray actors really compute the document embeddings instead of reading the local run's.
    return {
        "type": "ensemble",
        "members": [
            {"type": "first-stage", "source": "bm25"},
            {"type": "bi-encoder", "model": "minilm", "cache_dir": str(cache)},
        ],
    }


def _records(store) -> dict:
    return {
        r.key: (r.kind, r.teacher, r.teacher_id, r.query_id, r.query, r.doc_ids, r.value, r.doc)
        for r in store.iter_records()
    }


def _exported(store, path: Path) -> list[dict]:
    """The training export (`LabelStore.export_jsonl`) without what differs by run: time taken and when."""
    import json

    store.export_jsonl(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        del r["created_at"]
    return sorted(rows, key=lambda r: r["key"])


def test_ray_labels_identical_to_single_process(tmp_path: Path, data_dir: Path, minilm_dir: Path) -> None:
    ray = pytest.importorskip("ray", reason="ray (extra 'ray') not installed")
    import torch

    from rankdistill.data import load_dataset
    from rankdistill.labels import LabelStore, label_candidates
    from rankdistill.labels.ray_backend import RayOptions, label_candidates_ray
    from rankdistill.retrieval import BM25Retriever
    from rankdistill.teachers import load_teacher, run_candidates

    torch.set_num_threads(1)  # the actors run one thread each; same kernels, same bits
    ds = load_dataset("scifact", data_dir=data_dir)
    queries = ds.split_queries("test").subset(list(ds.split_queries("test"))[:4])
    run = BM25Retriever.from_corpus(ds.corpus, cache_dir=tmp_path / "cache").retrieve(queries, k=8)
    candidates = run_candidates(queries, ds.corpus, run, depth=8)
    assert len(candidates) == 32

    with LabelStore(tmp_path / "local.sqlite") as local:
        local_labels = label_candidates(
            load_teacher(_spec(tmp_path / "emb-local")), candidates, local, batch_size=6, show_progress=False
        )
        expected = _records(local)
        expected_export = _exported(local, tmp_path / "local.jsonl")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        options = RayOptions(num_actors=2, num_cpus_per_actor=1, threads_per_actor=1, show_progress=False)
        with LabelStore(tmp_path / "ray.sqlite") as store:
            labels = label_candidates_ray(
                _spec(tmp_path / "emb-ray"), candidates, store, options=options, batch_size=6
            )
            got = _records(store)
            got_export = _exported(store, tmp_path / "ray.jsonl")
            # a second call finds everything stored and starts no actor
            from rankdistill.labels.ray_backend import RayScorer

            teacher = load_teacher(_spec(tmp_path / "emb-ray"))
            scorer = RayScorer(store, _spec(tmp_path / "emb-ray"), options, batch_size=6)
            again = teacher.label_candidates(candidates, scorer)
            assert scorer.stats["bi-encoder"].computed == 0 and scorer.stats["bi-encoder"].cached == 32
    finally:
        ray.shutdown()

    # 32 bi-encoder labels + 32 fused ensemble labels, under the same keys with the same values
    assert len(expected) == 64
    assert got == expected
    # the export trains the same whichever backend labelled: Ray rows carry the document text too
    assert got_export == expected_export
    assert all(r["doc"] for r in got_export if r["kind"] == "pointwise")
    assert labels == local_labels == again
    assert len({lab.score for lab in labels}) > 10  # real, varied scores
