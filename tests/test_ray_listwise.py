"""Listwise and reasoning labels on a local Ray instance (`RayExecutor`, workers running the real Gemma 3
270M GGUF through llama.cpp) give the label store a single-process run writes: same keys, same values,
each computed once, and a cut-short Ray run resumes like a local one."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankdistill.data.types import Corpus, Document, Queries, Run

pytestmark = [pytest.mark.slow, pytest.mark.llm]

DOCS = {
    "solar": "Perovskite solar cells reached a record power conversion efficiency of 26 percent in 2023.",
    "wind": "Offshore wind turbines produce more energy per year than onshore turbines of the same size.",
    "bread": "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough slowly.",
    "vaccine": "The measles vaccine gives lasting immunity after two doses in almost every child.",
    "battery": "Lithium iron phosphate batteries last longer but store less energy than nickel batteries.",
}
QUERIES = {
    "q1": "record efficiency of solar cells",
    "q2": "how long do lithium batteries last",
    "q3": "does the measles vaccine work",
}
ORDER = {  # a pre-ranker's order per query, best first
    "q1": ["solar", "battery", "wind", "bread"],
    "q2": ["battery", "solar", "vaccine", "wind"],
    "q3": ["vaccine", "bread", "battery", "solar"],
}


def _spec(gguf: Path) -> dict:
    return {"backend": "llamacpp", "model": str(gguf), "n_ctx": 2048, "n_threads": 1}


def _data():
    corpus = Corpus([Document(d, text) for d, text in DOCS.items()])
    run = Run({q: {d: float(10 - i) for i, d in enumerate(ids)} for q, ids in ORDER.items()})
    return Queries(QUERIES), corpus, run


def _records(store) -> dict:
    """Everything a record says, except how long it took (`compute_ms` of the record and of a listwise
    value is the wall time of the batch, which no two runs share)."""
    out = {}
    for r in store.iter_records():
        value = {k: v for k, v in r.value.items() if k != "compute_ms"}
        out[r.key] = (r.kind, r.teacher, r.teacher_id, r.query_id, r.query, r.doc_ids, value)
    return out


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="ray (extra 'ray') not installed")
    if ray.is_initialized():  # another test's instance: use it, leave it
        yield ray
        return
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_listwise_labels_equal_local_ones_and_resume(
    tmp_path: Path, gemma_gguf: Path, ray_instance
) -> None:
    from rankdistill.labels import LabelStore
    from rankdistill.labels.listwise import label_listwise
    from rankdistill.labels.ray_backend import RayExecutor, RayOptions, RemoteLLM
    from rankdistill.llm import load_llm

    queries, corpus, run = _data()
    settings = {"method": "one_pass", "top_k": 2, "bottom_k": 2, "max_passage_words": 30, "batch_size": 2}

    llm = load_llm(_spec(gemma_gguf))
    try:
        with LabelStore(tmp_path / "local.sqlite") as local:
            local_labels, local_summary = label_listwise(
                llm, local, queries, corpus, run, show_progress=False, **settings
            )
            expected = _records(local)
        identity = llm.identity()
    finally:
        llm.close()
    assert local_summary["computed"] == 3 and len(expected) == 3

    options = RayOptions(num_actors=1, num_cpus_per_actor=1, show_progress=False)
    with RayExecutor(_spec(gemma_gguf), options) as executor, LabelStore(tmp_path / "ray.sqlite") as store:
        # the driver loads no model: the stand-in carries the identity a worker reported
        assert isinstance(executor.llm, RemoteLLM) and executor.llm.identity() == identity
        with pytest.raises(Exception, match="runs on the Ray workers"):
            executor.llm.generate(["hello"])

        # a run cut short after its first batch (2 queries), then the whole run: only the rest is computed
        _, first = label_listwise(
            executor.llm,
            store,
            queries,
            corpus,
            run,
            show_progress=False,
            limit=2,
            executor=executor,
            **settings,
        )
        assert first["computed"] == 2
        labels, summary = label_listwise(
            executor.llm, store, queries, corpus, run, show_progress=False, executor=executor, **settings
        )
        assert summary["cached"] == 2 and summary["computed"] == 1
        # and once more: everything is stored, nothing is computed
        again, summary = label_listwise(
            executor.llm, store, queries, corpus, run, show_progress=False, executor=executor, **settings
        )
        assert summary["cached"] == 3 and summary["computed"] == 0
        got = _records(store)

    assert got == expected  # same keys, same permutations, same raw answers, token counts and repairs
    assert [lab.permutation for lab in labels] == [lab.permutation for lab in local_labels]
    assert [lab.permutation for lab in again] == [lab.permutation for lab in local_labels]
    assert all(lab.llm_calls == 1 and lab.windows[0].raw for lab in labels)  # Gemma really answered


def test_ray_reasoning_labels_equal_local_ones(tmp_path: Path, gemma_gguf: Path, ray_instance) -> None:
    from rankdistill.labels import LabelStore
    from rankdistill.labels.ray_backend import RayExecutor, RayOptions
    from rankdistill.labels.reasoning import reasoning_labels
    from rankdistill.llm import load_llm

    queries, corpus, run = _data()
    queries = queries.subset(["q1"])
    settings = {
        "explicit_depth": 1,
        "comparison_depth": 2,
        "comparison_window": 2,
        "max_retries": 0,
        "max_passage_words": 30,
        "listwise": {"method": "one_pass", "top_k": 2, "bottom_k": 1, "max_passage_words": 30},
    }
    llm = load_llm(_spec(gemma_gguf))
    try:
        with LabelStore(tmp_path / "local.sqlite") as local:
            reasoning_labels(llm, local, queries, corpus, run, show_progress=False, **settings)
            expected = _records(local)
    finally:
        llm.close()
    # one permutation, one explicit and one comparison label
    assert sorted(k for k, *_ in expected.values()) == ["listwise", "reasoning", "reasoning"]

    options = RayOptions(num_actors=1, num_cpus_per_actor=1, show_progress=False)
    with RayExecutor(_spec(gemma_gguf), options) as executor, LabelStore(tmp_path / "ray.sqlite") as store:
        result = reasoning_labels(
            executor.llm, store, queries, corpus, run, show_progress=False, executor=executor, **settings
        )
        assert result.summary["explicit"]["computed"] == result.summary["comparison"]["computed"] == 1
        again = reasoning_labels(
            executor.llm, store, queries, corpus, run, show_progress=False, executor=executor, **settings
        )
        assert again.summary["listwise"]["computed"] == 0
        assert again.summary["explicit"]["computed"] == again.summary["comparison"]["computed"] == 0
        got = _records(store)
    assert got == expected
    (job, value), *_ = result.comparison
    assert value["doc_ids"] == list(job.doc_ids)  # the payload's tuple of texts and ids came back intact


def test_a_worker_with_another_model_setting_refuses_to_compute(
    tmp_path: Path, gemma_gguf: Path, ray_instance
) -> None:
    from rankdistill.errors import RankdistillError
    from rankdistill.labels import LabelStore
    from rankdistill.labels.listwise import label_listwise
    from rankdistill.labels.ray_backend import RayExecutor, RayOptions
    from rankdistill.llm import load_llm

    queries, corpus, run = _data()
    llm = load_llm(_spec(gemma_gguf))  # keys say n_ctx 2048; the worker loads 1024
    options = RayOptions(num_actors=1, num_cpus_per_actor=1, show_progress=False)
    try:
        with (
            RayExecutor({**_spec(gemma_gguf), "n_ctx": 1024}, options) as executor,
            LabelStore(tmp_path / "ray.sqlite") as store,
        ):
            with pytest.raises(RankdistillError, match="not the one the labels are keyed by") as err:
                label_listwise(
                    llm,
                    store,
                    queries,
                    corpus,
                    run,
                    method="one_pass",
                    show_progress=False,
                    executor=executor,
                )
            assert "starting at query 'q1'" in str(err.value) and "run again to resume" in str(err.value)
            assert len(store) == 0
    finally:
        llm.close()


@pytest.mark.data
def test_pipeline_listwise_labels_on_ray_equal_local_ones(
    tmp_path: Path, data_dir: Path, gemma_gguf: Path, tiny_pipeline: dict, ray_instance
) -> None:
    from rankdistill.labels import LabelStore
    from rankdistill.pipeline.config import parse_config
    from rankdistill.pipeline.stages import run_pipeline

    cfg = {
        **tiny_pipeline,
        "dataset": {**tiny_pipeline["dataset"], "data_dir": str(data_dir)},
        "train_queries": {"split": "train", "max_queries": 2},
        "queries": {"method": "none"},
        "labels": {
            **tiny_pipeline["labels"],
            "kind": "listwise",
            "depth": 4,
            "llm": _spec(gemma_gguf),
            "listwise": {"top_k": 2, "bottom_k": 1, "max_passage_words": 30},
            "fallback": "drop",  # no pointwise teacher: only the LLM runs
        },
    }
    stores = {}
    for backend in ("local", "ray"):
        labels = {**cfg["labels"], "backend": backend, "ray": {"num_actors": 1, "num_cpus_per_actor": 1}}
        results = {
            r.name: r
            for r in run_pipeline(
                parse_config({**cfg, "labels": labels}), run_dir=tmp_path / backend, until="labels"
            )
        }
        summary = results["labels"].summary
        assert summary["backend"] == backend and summary["train_queries"]["listwise"]["computed"] == 2
        with LabelStore(next((tmp_path / backend).rglob("labels.sqlite"))) as store:
            stores[backend] = _records(store)
    assert len(stores["local"]) == 2 and stores["ray"] == stores["local"]
