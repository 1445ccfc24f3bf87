"""`rankdistill train CONFIG`: build the student, read each phase's rows, train the phases, save.
The encoder trains on the sentence-transformers trainer (`training.trainer`), the decoder on its own
(`training.decoder`); both write `output_dir/<phase>/` while training and `output_dir/final` at the end."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any

from rankdistill.errors import DataError, RankdistillError
from rankdistill.evaluation.fusion import minmax
from rankdistill.students.hybrid import COLUMN
from rankdistill.training.config import (
    DataConfig,
    DecoderStudentConfig,
    DevConfig,
    TrainConfig,
    TrainingConfig,
)
from rankdistill.training.data import is_finite_label, label_kind, read_pairs_jsonl
from rankdistill.training.trainer import (
    Phase,
    TrainSettings,
    is_main_process,
    refit_hybrid,
    start_hybrid,
    train_phases,
    wait_for_everyone,
)
from rankdistill.utils import stable_hash

log = logging.getLogger(__name__)


def settings_from(cfg: TrainingConfig, seed: int, device: str = "auto") -> TrainSettings:
    return TrainSettings(**cfg.model_dump(), seed=seed, device=device)


def rows_from_label_store(data: DataConfig, data_dir: Path | None = None) -> list[dict[str, Any]]:
    """Pointwise records of the label store as training rows; document ids resolve against the dataset."""
    from rankdistill.data.datasets import load_dataset
    from rankdistill.labels.store import LabelStore

    corpus = load_dataset(data.dataset, data_dir=data_dir).corpus
    rows: list[dict[str, Any]] = []
    by_query: dict[str, list[int]] = {}
    with LabelStore(data.label_store) as store:
        for rec in store.iter_records(kind="pointwise", teacher=data.teacher):
            if not rec.doc_ids or rec.query is None:
                continue
            doc = corpus.get(rec.doc_ids[0])
            if doc is None:
                raise DataError(
                    f"label {rec.key} names document {rec.doc_ids[0]!r}, which is not in {data.dataset}'s corpus",
                    data.label_store,
                )
            value = rec.value if isinstance(rec.value, dict) else {"score": rec.value}
            if data.label == "logits":
                if not value.get("logits") or len(value["logits"]) != 2:
                    raise DataError(
                        f"label {rec.key} has no [false, true] logits; use label: minmax", data.label_store
                    )
                label: Any = [float(x) for x in value["logits"]]
            else:
                label = float(value["score"])
            if not is_finite_label(label):
                raise DataError(f"label {rec.key} is {label!r}; expected finite numbers", data.label_store)
            by_query.setdefault(rec.query, []).append(len(rows))
            rows.append({"query": rec.query, "document": doc.full_text, "label": label})
    if not rows:
        raise DataError(
            f"no pointwise labels (teacher={data.teacher!r}) in the label store", data.label_store
        )
    if data.label == "minmax":
        for idx in by_query.values():
            scaled = minmax({str(i): rows[i]["label"] for i in idx})
            for i in idx:
                rows[i]["label"] = scaled[str(i)]
    return rows


def phase_rows(data: DataConfig, seed: int, data_dir: Path | None = None) -> list[dict[str, Any]]:
    rows = read_pairs_jsonl(data.jsonl) if data.jsonl is not None else rows_from_label_store(data, data_dir)
    if data.max_rows is not None and len(rows) > data.max_rows:
        rows = random.Random(seed).sample(rows, data.max_rows)
    return rows


def dev_evaluator(dev: DevConfig, seed: int, data_dir: Path | None = None):
    """BM25 top-k of up to `max_queries` queries of a judged split, reranked by the student."""
    from rankdistill.data.datasets import load_dataset
    from rankdistill.retrieval.bm25 import BM25Retriever
    from rankdistill.training.evaluator import RerankingEvaluator

    ds = load_dataset(dev.dataset, data_dir=dev.data_dir or data_dir)
    qrels = ds.qrels(dev.split)
    queries = ds.split_queries(dev.split)
    qids = sorted(q for q in queries if q in qrels)
    if len(qids) > dev.max_queries:
        qids = sorted(random.Random(seed).sample(qids, dev.max_queries))
    queries = queries.subset(qids)
    run = BM25Retriever.from_corpus(ds.corpus).retrieve(queries, k=dev.k)
    documents = {d: ds.corpus[d].full_text for q in run.query_ids for d in run[q]}
    return RerankingEvaluator(queries, run, documents, qrels, k=dev.k, name="dev")


def decoder_phase_items(
    data: DataConfig, student: DecoderStudentConfig, seed: int, data_dir: Path | None = None
) -> list[Any]:
    """A decoder phase's training items: one group per query (from the pair JSONL or the label store),
    then its comparison reasoning in items of `group_size // 2` comparisons (a comparison shows two
    documents). `max_rows` keeps whole queries, drawn at random, up to that many rows."""
    from rankdistill.training.decoder import (
        comparison_groups,
        examples_from_rows,
        examples_from_store,
        read_comparisons,
        read_decoder_pairs,
    )

    if data.jsonl is not None:
        groups = examples_from_rows(read_decoder_pairs(data.jsonl), student.group_size, student.top, seed)
    else:
        from rankdistill.data.datasets import load_dataset
        from rankdistill.labels.store import LabelStore

        corpus = load_dataset(data.dataset, data_dir=data_dir).corpus
        with LabelStore(data.label_store) as store:
            groups = examples_from_store(store, corpus, data.teacher, student.group_size, student.top, seed)
        if not groups:
            raise DataError("no query with labelled documents in the corpus", data.label_store)
    if data.max_rows is not None and sum(len(g.documents) for g in groups) > data.max_rows:
        random.Random(seed).shuffle(groups)
        kept, n = [], 0
        for g in groups:
            if kept and n + len(g.documents) > data.max_rows:
                continue
            kept.append(g)
            n += len(g.documents)
        groups = kept
    items: list[Any] = list(groups)
    if data.comparisons is not None:
        comparisons = read_comparisons(data.comparisons)  # read even when unused: bad data fails fast
        if student.comparison_weight > 0:
            items += comparison_groups(comparisons, max(1, student.group_size // 2))
        else:
            log.info("%s: comparison_weight is 0; its comparisons are not trained on", data.comparisons)
    return items


def decoder_settings(
    cfg: TrainingConfig, student: DecoderStudentConfig, seed: int, device: Any = "auto"
) -> dict[str, Any]:
    """`train_decoder` arguments of a phase: `batch_size` counts pairs, as for the encoder's listwise
    losses, so a step takes `batch_size // group_size` items (at least one)."""
    import os

    return {
        "epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "groups_per_batch": max(1, cfg.batch_size // student.group_size),
        "learning_rate": cfg.learning_rate,
        "head_learning_rate": student.head_learning_rate,
        "warmup": cfg.warmup_ratio,
        "weight_decay": cfg.weight_decay,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "seed": seed,
        "bf16": None if cfg.bf16 == "auto" else bool(cfg.bf16),
        "device": device,
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "logging_steps": cfg.logging_steps,
        "resume": cfg.resume,
        "show_progress": os.environ.get("RANKDISTILL_PROGRESS", "auto") != "0",
    }


def train_decoder_from_config(cfg: TrainConfig) -> Path:
    """The decoder student's schedule: every phase's items read (and checked) before the model loads,
    phases in order on one student (a done phase is loaded, a killed one resumes), the final student
    saved to `output_dir/final`."""
    from rankdistill.students.metadata import STUDENT_TYPES
    from rankdistill.training.decoder import DecoderExample, DecoderPhase, train_decoder_phases
    from rankdistill.training.losses.joint import JointRankLMLoss

    sc: DecoderStudentConfig = cfg.student
    if distributed_world_size() > 1:
        # its trainer runs the loss on the student itself, not through the DDP wrapper: each process
        # would train on its own share of the batches without averaging gradients
        raise RankdistillError(
            f"the decoder student trains in one process; this run has {distributed_world_size()} "
            "(accelerate launch / torchrun data-parallel training is for the encoder student)"
        )
    device = training_device(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(
        json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    phases = []
    for p in cfg.phases:
        items = decoder_phase_items(p.data, sc, cfg.seed, cfg.data_dir)
        groups = sum(isinstance(x, DecoderExample) for x in items)
        log.info("phase %s: %d query groups, %d comparison items", p.name, groups, len(items) - groups)
        settings = decoder_settings(cfg.phase_training(p), sc, cfg.seed, device)
        phases.append(DecoderPhase(p.name, items, settings))
    overrides = sc.decoder_config()
    student = STUDENT_TYPES.info("decoder")["create"](overrides.pop("backbone"), seed=cfg.seed, **overrides)

    def loss(model):
        return JointRankLMLoss(
            model,
            rank_loss=sc.rank_loss,
            rank_weight=sc.rank_weight,
            lm_weight=sc.lm_weight,
            temperature=sc.temperature,
            comparison_weight=sc.comparison_weight,
        )

    summary = train_decoder_phases(student, phases, out, loss)
    final = out / "final"
    training = {
        "backbone": sc.backbone,
        "loss": loss(student).get_config_dict(),
        "phases": [
            {k: p[k] for k in ("name", "groups", "comparisons", "steps", "train_loss")}
            for p in summary["phases"]
        ],
        "seed": cfg.seed,
        "config_hash": config_hash(cfg),
    }
    student.save(final, merge=sc.merge, training=training)
    return final


def config_hash(cfg: TrainConfig) -> str:
    """The hash of what was trained (the device it was trained on left out)."""
    return stable_hash(cfg.model_dump(mode="json", exclude={"device"}), 16)


def training_device(cfg: TrainConfig):
    """The config's `device` resolved here (an error naming the key when it is not there, checked before
    any row is read or model loaded)."""
    from rankdistill.hardware import resolve_device
    from rankdistill.training.trainer import trainer_device_problem

    device = resolve_device(cfg.device, "device")
    problem = trainer_device_problem(device)
    if problem is not None:
        raise RankdistillError(f"device {problem}")
    local_rank = int(os.environ.get("LOCAL_RANK", "-1") or -1)
    if device.type == "cuda" and device.index is None and local_rank >= 0:
        import torch

        # one process a GPU under accelerate launch / torchrun: "cuda" is this process's GPU from here on,
        # so each process builds its student there, not all of them on the first GPU
        if local_rank < torch.cuda.device_count():
            torch.cuda.set_device(local_rank)
    return device


def distributed_world_size() -> int:
    """How many processes `accelerate launch` / `torchrun` started for this run (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def train_from_config(cfg: TrainConfig) -> Path:
    """Run a whole training config on its `device` ("auto": a GPU when there is one); returns the folder
    of the final student."""
    from rankdistill.students.metadata import STUDENT_TYPES
    from rankdistill.training.losses import build_loss

    if cfg.student.type == "decoder":
        return train_decoder_from_config(cfg)

    device = training_device(cfg)
    # how the encoder student is created and saved
    student = STUDENT_TYPES.info(cfg.student.type)
    create, save = student["create"], student["save"]
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # under accelerate launch / torchrun every process trains the same student; rank 0 writes the files
    main = is_main_process()
    if main:
        (out / "config.json").write_text(
            json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )
    phases = []  # read (and check) every phase's rows before the model loads: bad data fails fast
    for i, p in enumerate(cfg.phases):
        rows = phase_rows(p.data, cfg.seed, cfg.data_dir)
        kind, what = label_kind(rows)
        found = cfg.loss_problem(kind)
        if found is not None:
            source = p.data.jsonl if p.data.jsonl is not None else p.data.label_store
            raise RankdistillError(
                f"losses.{found[0]}.name: {found[1]}; phase {p.name!r} ({source}, phases.{i}.data) has {what}"
            )
        if cfg.student.hybrid:
            missing = next((j for j, r in enumerate(rows) if COLUMN not in r), None)
            if missing is not None:
                source = p.data.jsonl if p.data.jsonl is not None else p.data.label_store
                raise RankdistillError(
                    f"student.hybrid: phase {p.name!r} ({source}, phases.{i}.data) row {missing + 1} has no "
                    f"{COLUMN!r} value (each pair's first-stage score, min-max scaled over its query's "
                    "candidates); rows written by `rankdistill run`'s labels stage have it"
                )
        log.info("phase %s: %d training rows", p.name, len(rows))
        phases.append(Phase(p.name, rows, settings_from(cfg.phase_training(p), cfg.seed, str(device))))
    model = create(
        cfg.student.base,
        cfg.student.num_layers,
        cfg.student.num_labels,
        cfg.student.max_length,
        seed=cfg.seed,
        layers=cfg.student.layers,
        device=str(device),
    )
    specs = [spec.model_dump() for spec in cfg.losses]
    if cfg.student.hybrid:
        start_hybrid(
            model,
            [r for p in phases for r in p.rows],
            build_loss(model, specs),
            cfg.student.hybrid_depth,
            cfg.student.hybrid_start,
        )
    evaluator = dev_evaluator(cfg.dev, cfg.seed, cfg.data_dir) if cfg.dev is not None else None
    summary = train_phases(model, lambda m: build_loss(m, specs), phases, out, evaluator=evaluator)
    refit = None
    if cfg.student.hybrid:  # the first-stage weight's optimum for the trained encoder
        refit = refit_hybrid(
            model, [r for p in phases for r in p.rows], build_loss(model, specs), seed=cfg.seed
        )
    final = out / "final"
    if main:
        save(
            model,
            final,
            {
                "base": cfg.student.base,
                "losses": specs,
                "phases": [
                    {"name": p["name"], "rows": p["rows"], "steps": p["steps"]} for p in summary["phases"]
                ],
                "seed": cfg.seed,
                "config_hash": config_hash(cfg),
                **({"first_stage_refit": {"trained": refit[0], "refitted": refit[1]}} if refit else {}),
            },
        )
        if evaluator is not None:
            (out / "dev_history.json").write_text(
                json.dumps(evaluator.history, indent=1) + "\n", encoding="utf-8"
            )
    wait_for_everyone()
    return final
