"""One registry mechanism: a teacher, LLM backend, loss, label kind or student type defined here and
registered with one line is usable through the normal entry points; an unknown name is one line that
lists the known ones. Everything registered here is a small real class, unregistered after its test."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from rankdistill.errors import RankdistillError
from rankdistill.inference.reranker import Reranker, StudentReranker
from rankdistill.labels import LABEL_KINDS, LabelStore, run_jobs
from rankdistill.labels.runner import LabelJob
from rankdistill.llm import HFLLM, LLM, LLM_BACKENDS, LlamaCppLLM, OpenAICompatLLM, load_llm
from rankdistill.llm.base import ContinuationScore, Generation
from rankdistill.registry import Registry, UnknownNameError
from rankdistill.students import STUDENT_TYPES
from rankdistill.teachers import (
    TEACHERS,
    EnsembleTeacher,
    PointwiseLabel,
    PointwiseTeacher,
    load_teacher,
    teacher_config,
)
from rankdistill.teachers.listwise import ListwiseTeacher
from rankdistill.training.losses import LOSSES, build_loss, get_loss, loss_names

# ------------------------------------------------------------------ things a plugin would define


class WordsLLM(LLM):
    """A deterministic 'model': logits from repeated words, log-probabilities from lengths, fixed text."""

    backend = "words"
    supports_json_schema = True
    model_hint = "any name"
    spec_hint = "words:<name>"

    def __init__(self, model: str, *, scale: float = 1.0):
        self.model, self.scale = model, scale

    def identity(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "scale": self.scale}

    def generate(self, prompts, **kwargs) -> list[Generation]:
        return [Generation(text='{"ranking": [1]}', n_tokens=4) for _ in prompts]

    def score_continuations(self, pairs) -> list[ContinuationScore]:
        return [ContinuationScore(-float(len(c.split())), len(c.split())) for _, c in pairs]

    def next_token_logits(self, prompts, candidates) -> list[list[float]]:
        # the more words a prompt repeats (query words found in the document), the more "true"
        out = []
        for p in prompts:
            words = p.lower().split()
            repeated = {w for w in words if words.count(w) > 1}
            out.append([0.0, self.scale * len(repeated)][: len(candidates)])
        return out


class OverlapTeacher(PointwiseTeacher):
    """Pointwise score: how many query words the document contains, times `weight`."""

    name = "overlap"

    def __init__(self, weight: str | float = 1.0):
        self.weight = float(weight)

    def identity(self) -> dict[str, Any]:
        return {"teacher": "overlap", "weight": self.weight}

    def score(self, pairs):
        return [PointwiseLabel(self.weight * len(set(q.split()) & set(d.split()))) for q, d in pairs]


class HalfL1Loss(nn.Module):
    """L1 between a model's scores (here: the labels' mean, the model being a plain callable) and labels."""

    def __init__(self, model, scale: float = 1.0):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, inputs, labels: torch.Tensor) -> torch.Tensor:
        return self.scale * (self.model(inputs) - labels).abs().mean() / 2


def label_lengths(llm, store, queries, corpus, run, *, listwise, batch_size: int = 16) -> dict:
    """A label kind: the word count of each candidate, 'taught' by the LLM named on the command line."""
    jobs = []
    for qid in run.query_ids:
        for did, _ in run.ranked(qid, listwise["depth"]):
            text = corpus[did].full_text
            key = LabelStore.key(llm.identity(), None, queries[qid], text)
            jobs.append(LabelJob(key, text, query_id=qid, doc_ids=[did], query=queries[qid]))
    result = run_jobs(
        store,
        jobs,
        lambda texts: [{"words": len(t.split())} for t in texts],
        kind="lengths",
        teacher_name=f"lengths-{llm.backend}",
        teacher_identity=llm.identity(),
        batch_size=batch_size,
        show_progress=False,
    )
    return {"computed": result.stats.computed, "cached": result.stats.cached}


class KeywordStudent:
    """A student type whose saved folder is just its keywords: score = keywords found in the document."""

    def __init__(self, keywords: list[str]):
        self.keywords = keywords

    def score(self, pairs, *, batch_size: int = 8, show_progress: bool = False) -> list[float]:
        return [float(sum(k in d.lower() for k in self.keywords)) for _, d in pairs]


def load_keyword_student(path, **options) -> KeywordStudent:
    return KeywordStudent(json.loads((Path(path) / "rankdistill.json").read_text())["keywords"])


@pytest.fixture()
def registered():
    """Register with one line each, as a plugin module's last lines would; unregister afterwards."""
    LLM_BACKENDS.register("words", WordsLLM, aliases=("bag-of-words",))
    TEACHERS.register("overlap", OverlapTeacher, arg="weight", default="1")
    LOSSES.register("half_l1", HalfL1Loss)
    LABEL_KINDS.register("lengths", label_lengths)
    STUDENT_TYPES.register("keyword", load_keyword_student)
    yield
    LLM_BACKENDS.unregister("words")
    TEACHERS.unregister("overlap")
    LOSSES.unregister("half_l1")
    LABEL_KINDS.unregister("lengths")
    STUDENT_TYPES.unregister("keyword")


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------ the generic registry


def test_registry_names_aliases_lazy_entries_and_misses():
    reg = Registry("widget")
    reg.register("gear", dict, aliases=("cog",), teeth=12)
    reg.register("posix", "pathlib:PurePosixPath")  # imported on first get
    assert reg.get("cog") is dict and reg.canonical("cog") == "gear" and reg.info("gear") == {"teeth": 12}
    assert reg.get("posix").__name__ == "PurePosixPath"
    assert reg.names() == ["gear", "posix"] and "cog" in reg and "sprocket" not in reg
    with pytest.raises(UnknownNameError) as exc:
        reg.get("sprocket")
    assert one_line(exc) == "unknown widget 'sprocket'; expected one of gear (cog), posix"
    assert isinstance(exc.value, RankdistillError) and isinstance(exc.value, KeyError)
    with pytest.raises(RankdistillError, match="'cog' is already taken by 'gear'"):
        reg.register("wheel", list, aliases=("cog",))
    reg.register("gear", tuple)  # a module run again replaces its own entry
    assert reg.get("gear") is tuple and reg.names() == ["gear", "posix"]
    reg.unregister("gear")
    assert "cog" not in reg and reg.names() == ["posix"]


def test_modules_are_imported_on_the_first_lookup_that_needs_them(tmp_path, monkeypatch):
    """The package lists its modules; each registers itself at its bottom; one that cannot be imported
    is named on a miss instead of breaking every lookup."""
    (tmp_path / "rd_widget_registry.py").write_text(
        "from rankdistill.registry import Registry\n"
        "WIDGETS = Registry('widget', modules=('rd_widgets_missing', 'rd_widgets_gears'))\n"
    )
    (tmp_path / "rd_widgets_gears.py").write_text(
        "from rd_widget_registry import WIDGETS\n\nclass Gear: ...\n\nWIDGETS.register('gear', Gear)\n"
    )
    (tmp_path / "rd_widgets_missing.py").write_text("import rd_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from rd_widget_registry import WIDGETS

    assert "rd_widgets_gears" not in sys.modules
    assert WIDGETS.get("gear").__name__ == "Gear" and "rd_widgets_gears" in sys.modules
    with pytest.raises(UnknownNameError) as exc:
        WIDGETS.get("cog")
    assert one_line(exc).startswith(
        "unknown widget 'cog'; expected one of gear (rd_widgets_missing could not"
    )


def test_importing_the_packages_imports_no_backend_or_loss_module():
    code = textwrap.dedent(
        """
        import sys
        import rankdistill, rankdistill.llm, rankdistill.teachers.base, rankdistill.students.metadata
        heavy = [m for m in ("rankdistill.llm.hf", "rankdistill.llm.llamacpp", "rankdistill.students.decoder",
                             "rankdistill.training.losses.joint", "sentence_transformers") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ each registry through its entry point


def test_a_registered_backend_loads_by_spec_and_config(registered):
    llm = load_llm("words:tiny")
    assert isinstance(llm, WordsLLM) and llm.model == "tiny"
    llm = load_llm({"backend": "bag-of-words", "model": "big", "scale": 2.0})
    assert (llm.model, llm.scale) == ("big", 2.0)
    with pytest.raises(RankdistillError, match="the words backend needs 'model' \\(any name\\)"):
        load_llm({"backend": "words"})
    with pytest.raises(RankdistillError) as exc:
        load_llm({"backend": "tensorflow", "model": "x"})
    assert "expected 'backend' one of llamacpp, hf, openai, words" in str(exc.value)
    with pytest.raises(RankdistillError, match="'words:<name>'"):
        load_llm("no-such-model-anywhere")


def test_teachers_read_json_schema_support_from_the_backend(registered):
    assert ListwiseTeacher(load_llm("words:tiny")).constrained is True
    assert LlamaCppLLM.supports_json_schema is True and HFLLM.supports_json_schema is False
    server = OpenAICompatLLM("http://127.0.0.1:9/v1", "m", json_mode="none")
    try:
        assert ListwiseTeacher(server).constrained is False
        server.json_mode = "grammar"
        assert ListwiseTeacher(server).constrained is True
    finally:
        server.close()


def test_a_registered_teacher_works_in_specs_ensembles_and_with_a_registered_backend(registered):
    assert teacher_config("overlap:2") == {"type": "overlap", "weight": "2"}
    teacher = load_teacher("overlap")
    assert isinstance(teacher, OverlapTeacher) and teacher.weight == 1.0
    pairs = [("rain clouds", "clouds bring rain"), ("rain clouds", "stock market")]
    assert [lab.score for lab in teacher.score(pairs)] == [2.0, 0.0]
    ens = load_teacher("bm25+0.5*overlap:3")
    assert isinstance(ens, EnsembleTeacher) and isinstance(ens.members[1], OverlapTeacher)
    # an LLM teacher over the registered backend: two registries, one spec
    tf = load_teacher("truefalse:words:tiny")
    scores = [lab.score for lab in tf.score(pairs)]
    assert scores[0] > scores[1]
    with pytest.raises(ValueError) as exc:
        teacher_config("oracle:x")
    assert "unknown teacher 'oracle'" in one_line(exc) and "overlap" in str(exc.value)


def test_a_registered_loss_builds_by_name_and_passes_config_validation(registered):
    from rankdistill.training.config import LossConfig

    assert get_loss("half_l1") is HalfL1Loss and "half_l1" in loss_names()
    loss = build_loss(lambda inputs: torch.tensor([1.0, 1.0]), [{"name": "half_l1", "args": {"scale": 4.0}}])
    assert isinstance(loss, HalfL1Loss)
    assert loss(None, torch.tensor([0.0, 2.0])).item() == pytest.approx(2.0)
    assert LossConfig(name="half_l1").name == "half_l1"
    assert get_loss("margin_mse").__name__ == "MarginMSELoss" and get_loss("mse").__name__ == "MSELoss"
    with pytest.raises(KeyError) as exc:
        get_loss("nope")
    assert one_line(exc).startswith("unknown loss 'nope'; expected one of ") and "half_l1" in str(exc.value)


@pytest.fixture()
def beir(tmp_path, monkeypatch):
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    docs = {"d1": "rain falls from clouds", "d2": "stocks fell on monday", "d3": "clouds hold water droplets"}
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in docs.items())
    )
    (folder / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "why rain falls from clouds"}) + "\n"
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RANKDISTILL_PROGRESS", "0")
    return folder


def test_a_registered_label_kind_runs_from_the_cli_into_the_store(registered, beir, tmp_path):
    from rankdistill.cli import app

    store = tmp_path / "labels.sqlite"
    args = [
        "label",
        "--kind",
        "lengths",
        "-t",
        "words:tiny",
        "-d",
        str(beir),
        "--depth",
        "2",
        "--store",
        str(store),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert summary["kind"] == "lengths" and summary["computed"] == 2
    with LabelStore(store) as s:
        assert {r.kind for r in s.iter_records()} == {"lengths"}
        assert sorted(r.value["words"] for r in s.iter_records()) == [4, 4]
    bad = CliRunner().invoke(app, ["label", "-d", str(beir), "--kind", "pairwise", "--store", str(store)])
    assert bad.exit_code != 0 and "pairwise" in bad.output and "lengths" in bad.output


def test_reranker_loads_a_registered_student_type(registered, tmp_path):
    folder = tmp_path / "keyword-student"
    folder.mkdir()
    (folder / "rankdistill.json").write_text(
        json.dumps({"student_type": "keyword", "keywords": ["rain", "cloud"]})
    )
    rr = Reranker.load(folder)
    assert isinstance(rr, StudentReranker) and rr.info()["student_type"] == "keyword"
    ranked = rr.rerank("weather", ["stocks fell", "rain from a cloud", "rain"], explain=True)
    assert [r.index for r in ranked] == [1, 2, 0] and [r.score for r in ranked] == [2.0, 1.0, 0.0]
    assert ranked[0].explanation is not None  # no explain() of its own: the term matches
    assert rr.explains_with_model is False

    (folder / "rankdistill.json").write_text(json.dumps({"student_type": "nonesuch"}))
    with pytest.raises(RankdistillError) as exc:
        Reranker.load(folder)
    text = one_line(exc)
    assert "rankdistill.json: unknown student type 'nonesuch'" in text
    assert "encoder" in text and "decoder" in text and "keyword" in text
