"""The pipeline config (`rankdistill run CONFIG.yaml`), validated by pydantic; errors name the key.

Every section has defaults, so the smallest config is one line (`dataset: {name: scifact}`).
configs/quickstart.yaml holds a complete, commented one. Unknown keys are errors (a typo such as
`labels.depht` must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rankdistill.errors import RankdistillError
from rankdistill.validation import key_error, validate_config, validation_error_lines


class ConfigError(RankdistillError, ValueError):
    """An invalid pipeline config; the message names the file and each bad key."""


def _device_name(device: str) -> str:
    """A device key's spelling checked (not whether this machine has it: a config may be checked on
    another machine than the one it runs on)."""
    from rankdistill.hardware import check_device_name

    try:
        return check_device_name(device)
    except RankdistillError as exc:
        raise ValueError(str(exc)) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSection(_Strict):
    """Which collection: a name found in the data directory (scifact, beir/scifact) or a BEIR folder."""

    name: str
    data_dir: Path | None = None
    eval_split: str = "test"
    max_eval_queries: int | None = Field(default=None, ge=1)


class BM25Section(_Strict):
    """First stage: the candidates every ranker reranks, for evaluation (k) and labelling."""

    k: int = Field(default=100, ge=1)
    k1: float = Field(default=1.5, gt=0)  # BM25Retriever's defaults: best measured on scifact and nfcorpus
    b: float = Field(default=0.75, ge=0, le=1)


class TrainQueriesSection(_Strict):
    """InRanker phase 1: texts of a split's existing queries (never their judgements) as training queries."""

    split: str | None = "train"
    max_queries: int | None = Field(default=None, ge=1)


class QueriesSection(BaseModel):
    """InRanker phase 2 (InPars): synthetic queries for sampled corpus documents.

    `method`: vanilla | gbq (written by `llm`) | sentence | title (no LLM) | none (skip the phase).
    `teacher`: the teacher of `filter: teacher` (InPars v2: each query's score is the teacher's score of
    (query, source document)); None: labels.teacher. Any other key is a field of
    `rankdistill.teachers.querygen.QueryGenConfig` (n_docs, n_per_doc, negatives, max_tokens, filter,
    keep_share, ...)."""

    model_config = ConfigDict(extra="allow")

    method: str = "vanilla"
    llm: str | dict[str, Any] | None = "llamacpp:gemma3-270m"
    teacher: str | dict[str, Any] | None = None

    @field_validator("teacher")
    @classmethod
    def _teacher_spec(cls, spec):
        if spec is not None:
            from rankdistill.teachers import teacher_config

            teacher_config(spec)  # parses without loading any model; raises ValueError naming the problem
        return spec

    @model_validator(mode="after")
    def _known_fields(self) -> QueriesSection:
        if self.method == "none":
            return self
        from rankdistill.teachers.querygen import METHODS, QueryGenConfig

        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: expected one of {(*METHODS, 'none')}")
        known = {f.name for f in dataclasses.fields(QueryGenConfig)}
        unknown = sorted(set(self.model_extra or {}) - known)
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown}; expected one of {sorted(known | {'llm', 'teacher'})}"
            )
        try:
            self.querygen_config(seed=0).check()
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return self

    def querygen_config(self, seed: int):
        from rankdistill.teachers.querygen import QueryGenConfig

        fields = {"seed": seed, **(self.model_extra or {}), "method": self.method}
        return QueryGenConfig(**fields)


class RaySection(_Strict):
    """Where and how wide Ray labelling runs (`labels.backend: ray`)."""

    address: str | None = None  # None: start a local instance; "auto" or ray://host:10001 for a cluster
    num_actors: int = Field(default=2, ge=1)
    num_cpus_per_actor: float = Field(default=1.0, gt=0)
    num_gpus_per_actor: float = Field(default=0.0, ge=0)


class ListwiseSection(_Strict):
    """How each training query's candidates are ordered (`labels.kind: listwise` or `reasoning`).

    `ranker: llm` asks `labels.llm` for a permutation: in one pass over the top_k and bottom_k of the top
    `labels.depth` BM25 candidates (RRADistill; the ones it leaves out become hard negatives) or by
    RankGPT's sliding window over all of them. `ranker: teacher` orders the same lists by `labels.teacher`'s
    scores: a listwise signal without an LLM, or with a better teacher than the LLM at hand."""

    ranker: Literal["llm", "teacher"] = "llm"
    # first: FIRST (Reddy et al. 2024), each sliding window ranked by the first answer token's logits
    method: Literal["one_pass", "sliding_window", "first"] = "one_pass"
    window: int = Field(default=20, ge=2)
    step: int = Field(default=10, ge=1)
    top_k: int = Field(default=10, ge=1)
    bottom_k: int = Field(default=10, ge=0)
    max_passage_words: int | None = Field(default=100, ge=8)
    constrained: bool | None = None  # JSON-schema output where the backend can (None: if it can)
    # the prompt preset, and whether it goes as chat turns (auto: where the backend is chat)
    prompt: Literal["plain", "rankgpt", "rankzephyr"] = "plain"
    messages: bool | Literal["auto"] = "auto"
    identifiers: Literal["auto", "numbers", "letters"] = "auto"  # method first: single-token identifiers

    @model_validator(mode="after")
    def _window(self) -> ListwiseSection:
        if self.step >= self.window:
            raise ValueError(f"step {self.step} must be smaller than window {self.window}")
        if self.method == "first" and self.window > 26:
            raise ValueError(
                f"method first: window {self.window} is more than the 26 single-token identifiers"
            )
        if self.identifiers == "letters" and self.method != "first":
            raise ValueError(
                "identifiers: letters is for method: first (generated answers are parsed as numbers)"
            )
        if self.constrained and (self.method == "first" or self.prompt != "plain"):
            raise ValueError("constrained: true goes with prompt: plain and a generating method (not first)")
        return self

    def teacher_settings(self) -> dict[str, Any]:
        """The prompt options of `ListwiseTeacher` that differ from its defaults."""
        out: dict[str, Any] = {}
        for key, default in (("prompt", "plain"), ("messages", "auto"), ("identifiers", "auto")):
            if getattr(self, key) != default:
                out[key] = getattr(self, key)
        return out


class ReasoningSection(_Strict):
    """ReasoningRank's labels (`labels.kind: reasoning`): explicit reasoning for the top documents of each
    query's permutation, comparison reasoning over windows of it, or both."""

    types: Literal["explicit", "comparison", "both"] = "both"
    explicit_depth: int = Field(default=10, ge=1)
    comparison_depth: int = Field(default=10, ge=2)
    comparison_window: int = Field(default=5, ge=2)
    max_retries: int = Field(default=2, ge=0)
    max_passage_words: int | None = Field(default=150, ge=8)


class LabelsSection(_Strict):
    """Teacher labels of the training queries' BM25 candidates, kept in the run's SQLite label store.

    `kind: pointwise` (InRanker): `teacher` scores each candidate. `kind: listwise` (RRADistill): a
    permutation of each query's candidates (see `listwise`), trained on as rank targets. `kind: reasoning`
    (ReasoningRank): the permutation plus the LLM's explicit and comparison reasoning, for a decoder
    student that explains."""

    kind: Literal["pointwise", "listwise", "reasoning"] = "pointwise"
    teacher: str | dict[str, Any] = "bm25+minilm"
    # the LLM of listwise and reasoning labels (any backend: llama.cpp, transformers, OpenAI-compatible)
    llm: str | dict[str, Any] | None = None
    listwise: ListwiseSection = Field(default_factory=ListwiseSection)
    reasoning: ReasoningSection = Field(default_factory=ReasoningSection)
    # listwise/reasoning: each row's target is (1 - w) x its rank target + w x the pointwise teacher's
    # min-max score (0: the permutation alone; the pointwise teacher then runs only as the fallback)
    pointwise_weight: float = Field(default=0.0, ge=0, le=1)
    # a query whose permutation failed (the LLM placed none of its documents): train on its pointwise
    # labels instead, or leave it out; either way the labels summary counts it
    fallback: Literal["pointwise", "drop"] = "pointwise"
    depth: int = Field(default=20, ge=1)
    backend: Literal["local", "ray"] = "local"
    batch_size: int | None = Field(default=None, ge=1)
    target: Literal["minmax", "score", "logits"] = "minmax"
    # training rows per query: the teacher's `top` best plus random others up to `per_query` (None: all)
    per_query: int | None = Field(default=None, ge=1)
    top: int = Field(default=4, ge=0)
    ray: RaySection = Field(default_factory=RaySection)

    @field_validator("teacher")
    @classmethod
    def _teacher_spec(cls, spec):
        from rankdistill.teachers import teacher_config

        teacher_config(spec)  # parses without loading any model; raises ValueError naming the problem
        return spec

    @field_validator("llm")
    @classmethod
    def _llm_spec(cls, spec):
        if spec is not None:
            from rankdistill.llm.factory import llm_config

            try:
                llm_config(spec)  # parses without loading the model
            except RankdistillError as exc:
                raise ValueError(str(exc)) from None
        return spec

    @property
    def needs_llm(self) -> bool:
        return self.kind == "reasoning" or (self.kind == "listwise" and self.listwise.ranker == "llm")

    @property
    def needs_pointwise(self) -> bool:
        """Whether the pointwise teacher runs: pointwise labels, or what listwise rows fall back to or mix in."""
        return (
            self.kind == "pointwise"
            or self.listwise.ranker == "teacher"
            or self.pointwise_weight > 0
            or self.fallback == "pointwise"
        )

    @property
    def row_labels(self) -> tuple[str, str]:
        """The kind of label the training rows get (`rankdistill.training.losses.LABELS`, or "scalar": a
        number whose range is known once labelled) and the keys that decide it, for messages."""
        if self.kind != "pointwise":
            return "probability", f"labels.kind: {self.kind} gives rank targets in [0, 1]"
        kind, gives = {
            "minmax": ("probability", "per-query min-max scores in [0, 1]"),
            "score": ("scalar", "the teacher's raw scores"),
            "logits": ("logits", "[false, true] logit pairs"),
        }[self.target]
        return kind, f"labels.target: {self.target} gives {gives}"

    @property
    def list_size(self) -> int:
        """How many passages one listwise prompt shows."""
        lw = self.listwise
        if lw.method == "one_pass":
            return min(self.depth, lw.top_k + lw.bottom_k)
        return min(self.depth, lw.window)

    @model_validator(mode="after")
    def _kind_needs(self) -> LabelsSection:
        if self.needs_llm and self.llm is None:
            what = "reasoning labels" if self.kind == "reasoning" else "listwise labels with ranker: llm"
            raise ValueError(
                f"llm: {what} need an LLM that generates (e.g. llm: llamacpp:gemma3-270m, "
                "openai:http://127.0.0.1:8000/v1#model)"
                + (
                    "; or set listwise.ranker: teacher to order by labels.teacher"
                    if self.kind == "listwise"
                    else ""
                )
            )
        if self.kind == "reasoning" and self.reasoning.explicit_depth > self.depth:
            raise ValueError(
                f"reasoning.explicit_depth {self.reasoning.explicit_depth} is more than depth {self.depth}"
            )
        if self.needs_llm:
            from rankdistill.llm.factory import context_window

            n_ctx = context_window(self.llm)
            words = self.listwise.max_passage_words or 300
            # ~1.4 tokens a word plus the passage's "[12] " marker, instructions, and the answer
            need = int(self.list_size * (words * 1.4 + 6) + 120 + 6 * self.list_size + 24)
            if n_ctx is not None and need > n_ctx:
                key = (
                    "listwise.window"
                    if self.listwise.method in ("sliding_window", "first")
                    else "listwise.top_k/bottom_k"
                )
                raise ValueError(
                    f"{key}: {self.list_size} passages of up to {words} words need about {need} tokens, more "
                    f"than the LLM's context window of {n_ctx}; show fewer passages, lower "
                    "listwise.max_passage_words, or load the LLM with a larger n_ctx"
                )
        return self


class TrainSection(BaseModel):
    """Student training: the keys of `rankdistill train`'s config except output_dir and phases,
    which the pipeline fills in (one phase per labelled query set)."""

    model_config = ConfigDict(extra="forbid")

    student: dict[str, Any] = Field(default_factory=lambda: {"base": "minilm"})
    losses: list[dict[str, Any]] = Field(default_factory=lambda: [{"name": "soft_bce"}])
    training: dict[str, Any] = Field(default_factory=dict)
    phase_training: dict[str, dict[str, Any]] = Field(default_factory=dict)
    dev: dict[str, Any] | None = None
    max_rows: int | None = Field(default=None, ge=1)
    # run `rankdistill train` under a launcher for several GPUs, e.g. "accelerate launch --multi_gpu
    # --num_processes 4" or "torchrun --nproc_per_node 4"; None trains in this process
    launch: str | None = None

    def train_config(
        self,
        output_dir: Path,
        seed: int,
        phases: list[dict[str, Any]],
        data_dir: Path | None = None,
        device: str = "auto",
        hybrid_depth: int | None = None,
    ):
        """The validated `rankdistill.training` config for these phases, trained on `device`; a hybrid
        student's depth is `hybrid_depth` (the labels' depth) unless the student sets it."""
        from rankdistill.training.config import TrainConfig

        for p in phases:
            if p["name"] in self.phase_training:
                p["training"] = {**p.get("training", {}), **self.phase_training[p["name"]]}
        student = dict(self.student)
        if student.get("hybrid") and "hybrid_depth" not in student and hybrid_depth is not None:
            student["hybrid_depth"] = hybrid_depth  # the depth the labels stage scaled the feature over
        data = {
            "output_dir": output_dir,
            "seed": seed,
            "student": student,
            "losses": self.losses,
            "training": self.training,
            "dev": self.dev,
            "phases": phases,
            "data_dir": data_dir,
            "device": device,
        }
        return TrainConfig.model_validate(data)

    @model_validator(mode="after")
    def _valid_for_training(self) -> TrainSection:
        unknown = sorted(set(self.phase_training) - {"train_queries", "synthetic"})
        if unknown:
            raise ValueError(f"phase_training: unknown phase(s) {unknown}; expected train_queries, synthetic")
        try:
            self.train_config(Path("."), 0, [{"name": "check", "data": {"jsonl": "labels.jsonl"}}])
        except ValidationError as exc:
            raise ValueError(validation_error_lines(exc)[0]) from None
        return self


class EvaluateSection(_Strict):
    """BM25, teacher and student on the SAME candidates: BM25's top `bm25.k` of the eval queries."""

    measures: list[str] = Field(default_factory=lambda: ["nDCG@10", "RR@10", "R@100"], min_length=1)
    # teacher and student rerank the top `depth` of BM25's top bm25.k; the rest keep BM25's order below
    # them, so R@100 stays comparable (None: rerank all bm25.k)
    depth: int | None = Field(default=None, ge=1)
    teacher: bool = True
    # also report the student's scores fused with BM25's (per-query min-max, this weight on the student,
    # the rest on BM25; the teacher's own fusion at 0.5): free at inference, as BM25 scores come with the
    # candidates. None: student alone.
    fuse_student: float | None = Field(default=0.5, gt=0, lt=1)
    throughput_pairs: int = Field(default=512, ge=1)
    batch_size: int = Field(default=64, ge=1)
    # where the student is evaluated (and its pairs per second measured); None: the run's `device`
    device: str | None = None

    @field_validator("device")
    @classmethod
    def _device(cls, device: str | None) -> str | None:
        return None if device is None else _device_name(device)

    @field_validator("measures")
    @classmethod
    def _measures(cls, measures: list[str]) -> list[str]:
        from rankdistill.evaluation import parse_measures

        parse_measures(measures)
        return measures


class ReportSection(_Strict):
    title: str | None = None


class PipelineConfig(_Strict):
    """A whole run: data → BM25 → synthetic queries → teacher labels → training → evaluation → report."""

    name: str = Field(default="run", pattern=r"^[A-Za-z0-9_.-]+$")
    run_dir: Path | None = None  # default: runs/<name>
    seed: int = 13
    threads: int | None = Field(default=None, ge=1)  # torch threads; None leaves torch's default
    # where every model of the run that runs in process does: the encoder teachers, the student in
    # training and evaluation (evaluate.device may differ); auto: a CUDA GPU when one is visible, else
    # MPS, else the CPU (rankdistill.hardware.resolve_device)
    device: str = "auto"
    dataset: DatasetSection
    bm25: BM25Section = Field(default_factory=BM25Section)
    train_queries: TrainQueriesSection = Field(default_factory=TrainQueriesSection)
    queries: QueriesSection = Field(default_factory=QueriesSection)
    labels: LabelsSection = Field(default_factory=LabelsSection)
    train: TrainSection = Field(default_factory=TrainSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    report: ReportSection = Field(default_factory=ReportSection)

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        return _device_name(device)

    @property
    def evaluate_device(self) -> tuple[str, str]:
        """The device the evaluate stage runs the student on, and the key that set it (for errors)."""
        if self.evaluate.device is not None:
            return self.evaluate.device, "evaluate.device"
        return self.device, "device"

    @model_validator(mode="after")
    def _some_training_queries(self) -> PipelineConfig:
        if self.train_queries.split is None and self.queries.method == "none":
            raise ValueError(
                "no training queries: set train_queries.split or a queries.method other than 'none'"
            )
        if self.train_queries.split is not None and self.train_queries.split == self.dataset.eval_split:
            raise ValueError(
                f"train_queries.split {self.train_queries.split!r} is dataset.eval_split; training on the "
                "evaluation queries would leak them into the student"
            )
        return self

    @model_validator(mode="after")
    def _losses_fit_the_labels(self) -> PipelineConfig:
        kind, why = self.labels.row_labels
        phases = [{"name": "check", "data": {"jsonl": "labels.jsonl"}}]
        found = self.train.train_config(Path("."), self.seed, phases).loss_problem(kind)
        if found is not None:
            i, problem = found
            raise key_error("PipelineConfig", ("train", "losses", i, "name"), f"{problem}; {why}")
        return self

    @model_validator(mode="after")
    def _filter_teacher_scores_pairs(self) -> PipelineConfig:
        spec = self.query_filter_teacher
        if spec is None:
            return self
        from rankdistill.teachers.querygen import filter_teacher_problem

        problem = filter_teacher_problem(spec)
        if problem is not None:
            which = (
                f"teacher {spec!r}"
                if self.queries.teacher is not None
                else f"labels.teacher {spec!r} (what it uses when queries.teacher is not set)"
            )
            raise key_error(
                "PipelineConfig",
                ("queries", "teacher"),
                f"queries.filter: teacher (InPars v2) scores each synthetic query's (query, source document) "
                f"pair alone, and {which} cannot: {problem}. Set queries.teacher to one teacher, e.g. "
                "minilm, cross-encoder:<model> or truefalse:<llm>",
            )
        return self

    @property
    def query_filter_teacher(self) -> str | dict[str, Any] | None:
        """The teacher spec of the InPars v2 filter (`queries.filter: teacher`): queries.teacher, else
        labels.teacher; None when no such filter runs."""
        if self.queries.method == "none" or (self.queries.model_extra or {}).get("filter") != "teacher":
            return None
        return self.queries.teacher if self.queries.teacher is not None else self.labels.teacher

    @property
    def resolved_run_dir(self) -> Path:
        return self.run_dir or Path("runs") / self.name


def parse_config(data: Any, source: str = "config") -> PipelineConfig:
    """Validate a mapping; a ConfigError lists every bad key as `section.key: what was expected`."""
    return validate_config(PipelineConfig, data, source, "pipeline config", ConfigError)


def check_dataset(config: PipelineConfig, source: str = "config") -> None:
    """What `run --check` adds to validation: the dataset exists (here, or as a BEIR download) and has
    the splits the config names; a ConfigError in one line otherwise."""
    from rankdistill.data.datasets import BEIR_MD5, Dataset, irds_split, resolve_dataset

    ds = config.dataset
    if ds.name.startswith("irds:"):
        # ir_datasets resolves (and may download) only when the data stage runs; its split is in its id
        splits, where = [irds_split(ds.name.removeprefix("irds:"))], f"{ds.name} (the split its id names)"
    else:
        try:
            folder = resolve_dataset(ds.name, ds.data_dir, download=False)
        except RankdistillError as exc:
            if ds.name.removeprefix("beir/").strip("/") in BEIR_MD5:
                return  # downloaded by the data stage
            raise ConfigError(f"{source}: dataset.name: {exc}") from None
        splits, where = Dataset(folder).splits, str(folder)
    for key, split in (
        ("dataset.eval_split", ds.eval_split),
        ("train_queries.split", config.train_queries.split),
    ):
        if split is not None and split not in splits:
            raise ConfigError(
                f"{source}: {key}: no split {split!r} in {where}; available: {', '.join(splits) or 'none'}"
            )


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`section.key=value` strings (value parsed as YAML) set into a copy of `data`."""
    import copy

    from rankdistill.validation import parse_yaml

    data = copy.deepcopy(data)
    for item in overrides:
        path, eq, raw = item.partition("=")
        if not eq or not path.strip():
            raise ConfigError(f"override {item!r}: expected section.key=value")
        keys = path.strip().split(".")
        node = data
        for k in keys[:-1]:
            if not isinstance(node.setdefault(k, {}), dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
            node = node[k]
        node[keys[-1]] = parse_yaml(raw, f"--set {path.strip()}", ConfigError)
    return data


def read_config_data(path: str | Path) -> dict[str, Any]:
    from rankdistill.validation import read_yaml

    data = read_yaml(path, ConfigError)
    return data if data is not None else {}


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read, override (`--set`) and validate a YAML pipeline config."""
    data = read_config_data(path)
    if overrides:
        data = apply_overrides(data if isinstance(data, dict) else {}, overrides)
    return parse_config(data, str(path))
