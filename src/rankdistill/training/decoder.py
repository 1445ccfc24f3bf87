"""Training the decoder student (`rankdistill.students.decoder.DecoderStudent`): its data (query groups
with teacher scores and optional reasoning, and comparison reasoning between two documents), the
collator that turns them into prompts and LM targets, a Hugging Face `Trainer` that checkpoints the
student as a student folder (adapter + head, not the frozen backbone) and resumes from it, and phases
run in order on one student (`rankdistill train` with `student.type: decoder`). The loss is
`rankdistill.training.losses.joint`.

Files it reads (the pipeline's labels stage writes both):

    pairs:        {"query_id"?, "query", "doc_id"?, "document", "label", "reasoning"?: str | null, ...}
    comparisons:  {"query_id"?, "query", "document_a", "document_b", "better": "A" | "B", "reason"}
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankdistill.data.jsonl import iter_jsonl
from rankdistill.errors import DataError, RankdistillError
from rankdistill.hardware import resolve_device
from rankdistill.students.decoder import DecoderStudent, comparison_target
from rankdistill.training.data import DOC_KEYS, _label, pick_rows
from rankdistill.training.losses.joint import JointRankLMLoss

log = logging.getLogger(__name__)

PHASE_DONE_FILE = "phase_done.json"


# --------------------------------------------------------------------------------------------- data
@dataclass
class DecoderExample:
    """One training group: a query, its candidates, the teacher's score for each and (optional) reasoning."""

    query: str
    documents: list[str]
    scores: list[float]
    reasonings: list[str | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.documents)
        if n == 0 or len(self.scores) != n or (self.reasonings is not None and len(self.reasonings) != n):
            raise ValueError(
                f"group for query {self.query[:40]!r}: {n} documents, {len(self.scores)} scores, "
                f"{None if self.reasonings is None else len(self.reasonings)} reasonings; expected equal, non-zero"
            )


@dataclass
class ComparisonExample:
    """Comparison reasoning: which of two documents is more relevant to the query ("A" or "B"), and why.
    An LM target only: " A. <reason>" after the student's comparison prompt."""

    query: str
    document_a: str
    document_b: str
    better: str
    reason: str

    def __post_init__(self) -> None:
        if self.better not in ("A", "B"):
            raise ValueError(f"better must be 'A' or 'B', got {self.better!r}")

    @property
    def target(self) -> str:
        return comparison_target(self.better, self.reason)


@dataclass
class ComparisonGroup:
    """Several comparisons that train as one item of a batch (about the cost of one ranking group)."""

    comparisons: list[ComparisonExample]


class DecoderCollator:
    """Turns `DecoderExample`s (and `ComparisonGroup`s or `ComparisonExample`s) into one padded batch for
    `JointRankLMLoss`: the ranking rows as they are, the comparison rows under `comparison_*` keys."""

    def __init__(self, student: DecoderStudent):
        self.student = student

    def __call__(self, examples: list) -> dict[str, torch.Tensor]:
        groups: list[DecoderExample] = []
        comparisons: list[ComparisonExample] = []
        for e in examples:
            if isinstance(e, ComparisonGroup):
                comparisons += e.comparisons
            elif isinstance(e, ComparisonExample):
                comparisons.append(e)
            else:
                groups.append(e if isinstance(e, DecoderExample) else DecoderExample(**e))
        batch: dict[str, torch.Tensor] = {}
        if groups:
            queries = [g.query for g in groups for _ in g.documents]
            docs = [d for g in groups for d in g.documents]
            reasonings = [r for g in groups for r in (g.reasonings or [None] * len(g.documents))]
            batch = self.student.encode(queries, docs, reasonings)
            size = max(len(g.documents) for g in groups)
            mask = torch.zeros((len(groups), size), dtype=torch.bool)
            teacher = torch.zeros((len(groups), size), dtype=torch.float32)
            for i, g in enumerate(groups):
                mask[i, : len(g.documents)] = True
                teacher[i, : len(g.documents)] = torch.tensor(g.scores, dtype=torch.float32)
            batch["group_mask"] = mask
            batch["labels"] = teacher
        else:
            batch["labels"] = torch.zeros((0, 0), dtype=torch.float32)
        if comparisons:
            cmp = self.student.encode_comparisons(
                [c.query for c in comparisons],
                [c.document_a for c in comparisons],
                [c.document_b for c in comparisons],
                [c.target for c in comparisons],
            )
            batch.update({f"comparison_{k}": v for k, v in cmp.items()})
        return batch


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[DecoderExample]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def examples_from_scores(
    queries: Mapping[str, str],
    documents: Mapping[str, str],
    teacher: Mapping[str, Mapping[str, float]],
    reasoning: Mapping[tuple[str, str], str] | None = None,
    group_size: int = 8,
    top: int = 2,
    seed: int = 0,
) -> list[DecoderExample]:
    """One group per query from a teacher's scores (query id -> doc id -> score, e.g. `Run.scores`).

    Each group holds the teacher's `top` best candidates and `group_size - top` drawn at random from the
    rest (seeded), so the student sees both what nDCG@10 is about and the tail it must push down.
    `reasoning` maps (query id, doc id) to the teacher's reasoning text, the LM target of that pair.
    """
    rng = random.Random(seed)
    out = []
    for qid, scores in teacher.items():
        if qid not in queries or not scores:
            continue
        keep = pick_rows({d: s for d, s in scores.items() if d in documents}, group_size, top, rng)
        if not keep:
            continue
        reasons = [reasoning.get((qid, d)) for d in keep] if reasoning else None
        out.append(
            DecoderExample(
                queries[qid], [documents[d] for d in keep], [float(scores[d]) for d in keep], reasons
            )
        )
    return out


def examples_from_store(
    store,
    corpus: Mapping[str, Any],
    teacher: str | None = None,
    group_size: int = 8,
    top: int = 2,
    seed: int = 0,
) -> list[DecoderExample]:
    """Groups from a `LabelStore`: pointwise teacher scores (of the teacher named `teacher`, or the only
    one there) with the explicit reasoning labels of the same (query, document) as LM targets.

    Comparison reasoning is about a window of documents, which a pointwise prompt cannot show; it stays
    in the store for a listwise student."""
    from rankdistill.labels.reasoning import reasoning_targets

    names = {t for kind, t in store.counts() if kind == "pointwise"}
    if teacher is None:
        if len(names) != 1:
            raise RankdistillError(
                f"{store.path}: pick the pointwise teacher to learn from; found {sorted(names)}"
            )
        teacher = next(iter(names))
    queries: dict[str, str] = {}
    scores: dict[str, dict[str, float]] = {}
    for rec in store.iter_records(kind="pointwise", teacher=teacher):
        qid = rec.query_id or rec.query
        queries[qid] = rec.query
        scores.setdefault(qid, {})[rec.doc_ids[0]] = float(rec.value["score"])
    if not scores:
        raise RankdistillError(f"{store.path}: no pointwise labels of teacher {teacher!r}")
    reasoning = {
        (ex["query_id"] or ex["query"], ex["doc_ids"][0]): ex["target"]
        for ex in reasoning_targets(store)
        if ex["type"] == "explicit"
    }
    documents = {d: corpus[d].full_text for s in scores.values() for d in s if d in corpus}
    return examples_from_scores(queries, documents, scores, reasoning, group_size, top, seed)


def _text(obj: Mapping[str, Any], key: str, path, lineno, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        what = "a string or null" if optional else "a non-empty string"
        raise DataError(f"{key!r} must be {what}, got {value!r}", path, lineno)
    return value


def read_decoder_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Pair rows of a decoder phase: `{"query_id"?, "query", "doc_id"?, "document", "label",
    "reasoning"?: str | null}` (other keys, such as "teacher_score", are ignored). The label is the
    ranking target; a [false, true] logit pair counts as its log-odds, true - false. The document may also
    be under "doc", "text" or "passage". A bad row raises a DataError naming the line."""
    rows = []
    for lineno, obj in iter_jsonl(path, required=("query", "label")):
        doc_key = next((k for k in DOC_KEYS if k in obj), "document")
        label = _label(obj["label"], path, lineno)
        rows.append(
            {
                "query_id": str(obj["query_id"]) if obj.get("query_id") is not None else None,
                "query": _text(obj, "query", path, lineno),
                "doc_id": str(obj["doc_id"]) if obj.get("doc_id") is not None else None,
                "document": _text(obj, doc_key, path, lineno),
                "label": label[1] - label[0] if isinstance(label, list) else label,
                "reasoning": _text(obj, "reasoning", path, lineno, optional=True),
            }
        )
    if not rows:
        raise DataError("no training rows; expected JSONL rows with 'query', 'document' and 'label'", path)
    return rows


def examples_from_rows(
    rows: Sequence[Mapping[str, Any]], group_size: int = 8, top: int = 2, seed: int = 0
) -> list[DecoderExample]:
    """One group per query (by "query_id", else by the query text), picked as `examples_from_scores`
    picks them: the `top` best by label, then `group_size - top` of the rest at random (seeded)."""
    by_query: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_query.setdefault(r.get("query_id") or r["query"], []).append(r)
    rng = random.Random(seed)
    out = []
    for members in by_query.values():
        # keys in input order: ties of the label keep the file's order
        scores = {f"{i:08d}": float(r["label"]) for i, r in enumerate(members)}
        keep = [members[int(k)] for k in pick_rows(scores, group_size, top, rng)]
        reasons = [r.get("reasoning") for r in keep]
        out.append(
            DecoderExample(
                keep[0]["query"],
                [r["document"] for r in keep],
                [float(r["label"]) for r in keep],
                reasons if any(reasons) else None,
            )
        )
    return out


def read_comparisons(path: str | Path) -> list[ComparisonExample]:
    """Comparison rows `{"query_id"?, "query", "document_a", "document_b", "better": "A" | "B",
    "reason"}` (A/B order as written: the writer shuffles it). A bad row raises a DataError naming the line."""
    out = []
    required = ("query", "document_a", "document_b", "better", "reason")
    for lineno, obj in iter_jsonl(path, required=required):
        better = obj["better"]
        if not isinstance(better, str) or better.strip().upper() not in ("A", "B"):
            raise DataError(f'\'better\' must be "A" or "B", got {better!r}', path, lineno)
        out.append(
            ComparisonExample(
                _text(obj, "query", path, lineno),
                _text(obj, "document_a", path, lineno),
                _text(obj, "document_b", path, lineno),
                better.strip().upper(),
                _text(obj, "reason", path, lineno),
            )
        )
    if not out:
        raise DataError(
            "no comparison rows; expected JSONL rows with " + ", ".join(map(repr, required)), path
        )
    return out


def comparison_groups(comparisons: Sequence[ComparisonExample], size: int) -> list[ComparisonGroup]:
    """Comparisons in items of `size` (in file order, so one query's comparisons stay together)."""
    size = max(1, size)
    return [ComparisonGroup(list(comparisons[i : i + size])) for i in range(0, len(comparisons), size)]


# ---------------------------------------------------------------------------------------- training
def _check_finite(student: nn.Module, where: str) -> None:
    """No NaN or inf in what training changes (adapter and head; the frozen backbone cannot change)."""
    bad = [n for n, p in student.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
    if bad:
        raise RankdistillError(
            f"{where}: {len(bad)} weight tensors hold NaN or inf (first: {bad[0]}); refusing to save them"
        )


def _trainer_class():
    from transformers import Trainer

    class DecoderTrainer(Trainer):
        """HF Trainer for the decoder student: the joint loss, checkpoints as student folders (adapter + head,
        not the whole frozen backbone), and resume from them."""

        def __init__(self, *args, loss: nn.Module, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss = loss
            self._terms: dict[str, list[float]] = {}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            loss = self.loss(inputs, labels)
            for k, v in self.loss.last_terms.items():
                self._terms.setdefault(k, []).append(v)
            return (loss, None) if return_outputs else loss

        def log(self, logs: dict[str, float], *args, **kwargs) -> None:
            if "loss" in logs and self._terms:  # training log: add the mean of each term since the last one
                logs.update({k: round(sum(v) / len(v), 4) for k, v in self._terms.items()})
                self._terms = {}
            super().log(logs, *args, **kwargs)

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            value = float(loss.detach().float().sum())
            if not math.isfinite(value):  # stop before the optimizer applies it (nothing NaN is saved)
                raise RankdistillError(
                    f"{self.args.output_dir}: the training loss became {value} at step "
                    f"{self.state.global_step + 1}; check the labels and the learning rate"
                )
            return loss

        def _save(self, output_dir: str | None = None, state_dict=None) -> None:
            self.model.save(output_dir or self.args.output_dir)

        def _save_checkpoint(self, model, trial) -> None:
            """The HF checkpoint, then a completion marker; old checkpoints are rotated out only once the
            new one is complete (as `rankdistill.training.trainer.DistillationTrainer`)."""
            from rankdistill.training.trainer import save_complete_checkpoint

            _check_finite(self.model, f"checkpoint at step {self.state.global_step}")
            save_complete_checkpoint(
                self, trial, lambda: super(DecoderTrainer, self)._save_checkpoint(model, trial)
            )

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
            self.model.load_weights(resume_from_checkpoint)

    return DecoderTrainer


def decoder_training_arguments(
    output_dir: str | Path,
    *,
    device: Any = "auto",
    bf16: bool | None = None,
    precision: str | None | bool = True,
    epochs: float = 1.0,
    max_steps: int = -1,
    groups_per_batch: int = 2,
    learning_rate: float = 2e-4,
    warmup: float = 0.1,
    weight_decay: float = 0.0,
    gradient_accumulation_steps: int = 1,
    seed: int = 0,
    save_steps: int | None = None,
    save_total_limit: int | None = None,
    logging_steps: int = 5,
    show_progress: bool = True,
):
    """The HF `TrainingArguments` `train_decoder` trains with. `device`: a name `resolve_device` resolves
    ("auto": a GPU when there is one), or a resolved `torch.device` taken as it is; `use_cpu` is set only
    for the CPU. Mixed precision: `bf16` True or False as given, None ("auto") what
    `rankdistill.hardware.training_precision` picks for the device (bf16 where native, fp16 on older GPUs);
    `precision` ("bf16", "fp16", None) instead decides it without asking the hardware."""
    from transformers import TrainingArguments

    from rankdistill.training.trainer import precision_arguments, trainer_device_problem

    device = device if isinstance(device, torch.device) else resolve_device(device)
    problem = trainer_device_problem(device)
    if problem is not None:
        raise RankdistillError(f"device {problem}")
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=groups_per_batch,
        learning_rate=learning_rate,
        warmup_steps=warmup,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type="linear",
        weight_decay=weight_decay,
        gradient_accumulation_steps=gradient_accumulation_steps,
        seed=seed,
        data_seed=seed,
        **precision_arguments(device, "auto" if bf16 is None else bool(bf16), precision),
        logging_steps=logging_steps,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=save_total_limit,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not show_progress,
    )


def train_decoder(
    student: DecoderStudent,
    examples: Sequence[DecoderExample | ComparisonGroup | ComparisonExample],
    output_dir: str | Path,
    *,
    loss: nn.Module | None = None,
    epochs: float = 1.0,
    max_steps: int = -1,
    groups_per_batch: int = 2,
    learning_rate: float = 2e-4,
    head_learning_rate: float | None = 1e-3,
    warmup: float = 0.1,
    weight_decay: float = 0.0,
    gradient_accumulation_steps: int = 1,
    seed: int = 0,
    bf16: bool | None = None,
    device: Any = "auto",
    save_steps: int | None = None,
    save_total_limit: int | None = None,
    logging_steps: int = 5,
    resume_from_checkpoint: str | bool | None = None,
    show_progress: bool = True,
) -> list[dict[str, float]]:
    """Train the student on teacher-labelled groups (and comparisons) with the HF Trainer; returns the
    Trainer's log history.

    The head gets its own (higher) learning rate: it starts from scratch while LoRA only nudges a trained
    LM. `device` (see `rankdistill.hardware.resolve_device`; "auto": a GPU when there is one) is where it
    trains, the Trainer moving the student there; bf16 (None) follows `training_precision` for that
    device (see `decoder_training_arguments`). The final student is saved to `output_dir`.
    """
    if not examples:
        raise ValueError("train_decoder needs at least one example group")
    loss = loss or JointRankLMLoss(student)
    args = decoder_training_arguments(
        output_dir,
        device=device,
        bf16=bf16,
        epochs=epochs,
        max_steps=max_steps,
        groups_per_batch=groups_per_batch,
        learning_rate=learning_rate,
        warmup=warmup,
        weight_decay=weight_decay,
        gradient_accumulation_steps=gradient_accumulation_steps,
        seed=seed,
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        logging_steps=logging_steps,
        show_progress=show_progress,
    )
    optimizer = None
    if head_learning_rate is not None:
        head_params = list(student.head.parameters())
        head_ids = {id(p) for p in head_params}
        lora_params = [p for p in student.parameters() if p.requires_grad and id(p) not in head_ids]
        optimizer = torch.optim.AdamW(
            [{"params": lora_params, "lr": learning_rate}, {"params": head_params, "lr": head_learning_rate}],
            weight_decay=weight_decay,
        )
    trainer = _trainer_class()(
        model=student,
        args=args,
        train_dataset=_ListDataset(examples),
        data_collator=DecoderCollator(student),
        loss=loss,
        optimizers=(optimizer, None),
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    _check_finite(student, f"{output_dir}: the trained student")
    student.save(output_dir)
    return trainer.state.log_history


@dataclass
class DecoderPhase:
    """One phase of a decoder schedule: its items (groups and comparison groups) and `train_decoder`
    keyword arguments."""

    name: str
    examples: list
    settings: dict[str, Any] = field(default_factory=dict)


def train_decoder_phases(
    student: DecoderStudent,
    phases: Sequence[DecoderPhase],
    output_dir: str | Path,
    loss_factory: Callable[[DecoderStudent], nn.Module] | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Run phases in order on the same student, each in `output_dir/<name>` (its checkpoints, then the
    student it ends with). A phase already done is loaded instead of retrained and, with `resume`, a
    phase killed part-way continues from its newest complete checkpoint: a killed schedule resumes
    where it stopped."""
    from rankdistill.training.trainer import last_complete_checkpoint, write_json_atomic

    output_dir = Path(output_dir)
    summary: dict[str, Any] = {"phases": []}
    for phase in phases:
        phase_dir = output_dir / phase.name
        done = phase_dir / PHASE_DONE_FILE
        if done.exists():
            log.info("phase %s already done; loading %s", phase.name, phase_dir)
            student.load_weights(phase_dir)
            summary["phases"].append(json.loads(done.read_text(encoding="utf-8")))
            continue
        phase_dir.mkdir(parents=True, exist_ok=True)
        settings = dict(phase.settings)
        checkpoint = None
        if settings.pop("resume", resume):
            checkpoint = last_complete_checkpoint(phase_dir)
            if checkpoint:
                log.info("phase %s: resuming from %s", phase.name, checkpoint)
        loss = loss_factory(student) if loss_factory else JointRankLMLoss(student)
        history = train_decoder(
            student, phase.examples, phase_dir, loss=loss, resume_from_checkpoint=checkpoint, **settings
        )
        steps = max((int(h.get("step", 0)) for h in history), default=0)
        record = {
            "name": phase.name,
            "groups": sum(isinstance(e, DecoderExample) for e in phase.examples),
            "comparisons": sum(
                len(e.comparisons) if isinstance(e, ComparisonGroup) else 1
                for e in phase.examples
                if isinstance(e, ComparisonGroup | ComparisonExample)
            ),
            "steps": steps,
            "train_loss": next((h["train_loss"] for h in reversed(history) if "train_loss" in h), None),
            "log_history": history,
        }
        write_json_atomic(done, record)
        summary["phases"].append(record)
    return summary
