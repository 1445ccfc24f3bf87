"""Training the decoder student (`rankdistill.students.decoder.DecoderStudent`): its data (query groups
with teacher scores and optional reasoning), the collator that turns them into ranking prompts and LM
targets, and a Hugging Face `Trainer` that checkpoints the student as a student folder (adapter + head,
not the frozen backbone) and resumes from it. The loss is `rankdistill.training.losses.joint`."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankdistill.errors import RankdistillError
from rankdistill.hardware import pick_dtype
from rankdistill.students.decoder import HEAD_NAME, DecoderStudent
from rankdistill.training.data import pick_rows
from rankdistill.training.losses.joint import JointRankLMLoss


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


class DecoderCollator:
    """Turns a list of `DecoderExample`s into one padded batch for `JointRankLMLoss`."""

    def __init__(self, student: DecoderStudent):
        self.student = student

    def __call__(self, examples: list[DecoderExample | dict]) -> dict[str, torch.Tensor]:
        groups = [e if isinstance(e, DecoderExample) else DecoderExample(**e) for e in examples]
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
        return batch


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[DecoderExample]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> DecoderExample:
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


# ---------------------------------------------------------------------------------------- training
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

        def _save(self, output_dir: str | None = None, state_dict=None) -> None:
            self.model.save(output_dir or self.args.output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
            from peft import set_peft_model_state_dict
            from peft.utils import load_peft_weights
            from safetensors.torch import load_file

            student = model or self.model
            set_peft_model_state_dict(
                student.backbone, load_peft_weights(str(Path(resume_from_checkpoint) / "adapter"))
            )
            student.head.load_state_dict(load_file(str(Path(resume_from_checkpoint) / HEAD_NAME)))

    return DecoderTrainer


def train_decoder(
    student: DecoderStudent,
    examples: Sequence[DecoderExample],
    output_dir: str | Path,
    *,
    loss: nn.Module | None = None,
    epochs: float = 1.0,
    max_steps: int = -1,
    groups_per_batch: int = 2,
    learning_rate: float = 2e-4,
    head_learning_rate: float | None = 1e-3,
    warmup: float = 0.1,
    seed: int = 0,
    bf16: bool | None = None,
    save_steps: int | None = None,
    logging_steps: int = 5,
    resume_from_checkpoint: str | bool | None = None,
    show_progress: bool = True,
) -> list[dict[str, float]]:
    """Train the student on teacher-labelled groups with the HF Trainer; returns the Trainer's log history.

    The head gets its own (higher) learning rate: it starts from scratch while LoRA only nudges a trained
    LM. The final student is saved to `output_dir`.
    """
    from transformers import TrainingArguments

    if not examples:
        raise ValueError("train_decoder needs at least one example group")
    loss = loss or JointRankLMLoss(student)
    if bf16 is None:
        bf16 = pick_dtype("cpu", "auto") == torch.bfloat16 and student.device.type == "cpu"
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=groups_per_batch,
        learning_rate=learning_rate,
        warmup_steps=warmup,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type="linear",
        weight_decay=0.0,
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        use_cpu=student.device.type == "cpu",
        logging_steps=logging_steps,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not show_progress,
    )
    optimizer = None
    if head_learning_rate is not None:
        head_params = list(student.head.parameters())
        head_ids = {id(p) for p in head_params}
        lora_params = [p for p in student.parameters() if p.requires_grad and id(p) not in head_ids]
        optimizer = torch.optim.AdamW(
            [{"params": lora_params, "lr": learning_rate}, {"params": head_params, "lr": head_learning_rate}],
            weight_decay=0.0,
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
    student.save(output_dir)
    return trainer.state.log_history
