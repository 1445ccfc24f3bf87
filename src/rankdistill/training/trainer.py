"""Training on the Hugging Face Trainer, through sentence-transformers' CrossEncoderTrainer.

The Trainer already gives the loop, checkpoints and resume, mixed precision, gradient accumulation and
multi-device (accelerate); this module adds what distillation needs on top:
- the loss-owned parameters (e.g. the Term Control Layer) go into every checkpoint and come back on
  resume, although they are never part of the saved model;
- arguments chosen for CPUs (bf16 where the CPU has native bf16, seeded data order);
- a two-phase schedule (phase 1 on existing training queries, phase 2 on synthetic queries, as
  InRanker), each phase in its own folder, skipped when done and resumed from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from torch import nn

from rankdistill.hardware import cpu_supports_bf16
from rankdistill.utils import set_seed

log = logging.getLogger(__name__)

LOSS_STATE_FILE = "loss_state.safetensors"
PHASE_DONE_FILE = "phase_done.json"


def loss_only_state(loss: nn.Module, model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a loss owns besides the model's (e.g. the TCL's weights)."""
    model_tensors = {id(t) for t in model.state_dict(keep_vars=True).values()}
    return {
        k: v.detach().cpu().contiguous()
        for k, v in loss.state_dict(keep_vars=True).items()
        if id(v) not in model_tensors
    }


class DistillationTrainer(CrossEncoderTrainer):
    """CrossEncoderTrainer whose checkpoints also hold the loss's own parameters."""

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True):
        """bf16 autocast around the loss. The Trainer leaves autocast to accelerate, which wraps only the
        prepared model's `forward`; rankdistill's losses call the inner Hugging Face model directly, so
        without this they ran in fp32 (measured: a step took as long with bf16 on as off)."""
        if self.args.bf16:
            device = "cuda" if torch.cuda.is_available() and not self.args.use_cpu else "cpu"
            return torch.autocast(device, dtype=torch.bfloat16, cache_enabled=cache_enabled)
        return super().autocast_smart_context_manager(cache_enabled)

    def _loss_modules(self) -> nn.Module:
        return nn.ModuleDict(self.loss) if isinstance(self.loss, dict) else self.loss

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        state = loss_only_state(self._loss_modules(), self.model)
        if not state or not self.args.should_save:
            return
        from safetensors.torch import save_file
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if folder.is_dir():
            save_file(state, str(folder / LOSS_STATE_FILE))

    def _load_from_checkpoint(self, checkpoint_path: str, *args, **kwargs) -> None:
        super()._load_from_checkpoint(checkpoint_path)
        path = Path(checkpoint_path) / LOSS_STATE_FILE
        if not path.exists():
            if loss_only_state(self._loss_modules(), self.model):
                log.warning(
                    "%s has no %s: the loss's own layers restart from scratch",
                    checkpoint_path,
                    LOSS_STATE_FILE,
                )
            return
        from safetensors.torch import load_file

        missing, unexpected = self._loss_modules().load_state_dict(load_file(str(path)), strict=False)
        if unexpected:
            log.warning("unexpected loss parameters in %s: %s", path, unexpected)


@dataclass
class TrainSettings:
    """The knobs of one training run (a phase); defaults suit a small student on a CPU."""

    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    gradient_accumulation_steps: int = 1
    seed: int = 42
    bf16: bool | str = "auto"
    logging_steps: int = 20
    save_steps: int = 200
    save_total_limit: int = 2
    eval_steps: int | None = None
    resume: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # any other CrossEncoderTrainingArguments field


def training_arguments(
    settings: TrainSettings, output_dir: str | Path, evaluate: bool
) -> CrossEncoderTrainingArguments:
    on_cpu = not torch.cuda.is_available()
    bf16 = cpu_supports_bf16() if (settings.bf16 == "auto" and on_cpu) else settings.bf16
    if bf16 == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        warmup_ratio=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=bool(bf16),
        use_cpu=on_cpu,
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        eval_strategy="steps" if evaluate and settings.eval_steps else "no",
        eval_steps=settings.eval_steps if evaluate and settings.eval_steps else None,
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=os.environ.get("RANKDISTILL_PROGRESS", "auto") == "0",
    )
    kwargs.update(settings.extra)
    return CrossEncoderTrainingArguments(**kwargs)


def train(
    model,
    loss: nn.Module,
    train_rows: list[dict[str, Any]] | Any,
    output_dir: str | Path,
    settings: TrainSettings | None = None,
    evaluator=None,
    callbacks: Sequence[Any] = (),
    columns: Sequence[str] = ("query", "document"),
) -> DistillationTrainer:
    """Train `model` in place on (query, document, label) rows; checkpoints go to `output_dir`.

    `train_rows` is a list of dicts (the text `columns` and "label") or a ready `datasets.Dataset`.
    With `settings.resume`, an interrupted run continues from its last checkpoint in `output_dir`.
    For a listwise loss, pair rows are grouped by query and `batch_size` still counts pairs: a step
    takes `batch_size // group size` queries (at least one).
    """
    from transformers.trainer_utils import get_last_checkpoint

    from rankdistill.training.data import group_rows, to_dataset
    from rankdistill.training.losses import needs_groups

    settings = settings or TrainSettings()
    if needs_groups(loss) and isinstance(train_rows, list) and train_rows:
        if isinstance(train_rows[0].get(columns[1]), str):
            train_rows = group_rows(train_rows, settings.seed)
        sizes = sorted(len(r[columns[1]]) for r in train_rows)
        per_step = max(1, settings.batch_size // sizes[len(sizes) // 2])
        settings = replace(settings, batch_size=per_step)
    set_seed(settings.seed)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    args = training_arguments(settings, output_dir, evaluate=evaluator is not None)
    trainer = DistillationTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(train_rows, columns) if isinstance(train_rows, list) else train_rows,
        loss=loss,
        evaluator=evaluator,
        callbacks=list(callbacks) or None,
    )
    checkpoint = get_last_checkpoint(str(output_dir)) if settings.resume else None
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    return trainer


@dataclass
class Phase:
    """One phase of a schedule: its name, its rows, and (optionally) its own settings."""

    name: str
    rows: list[dict[str, Any]]
    settings: TrainSettings | None = None


def train_phases(
    model,
    loss_factory,
    phases: Sequence[Phase],
    output_dir: str | Path,
    settings: TrainSettings | None = None,
    evaluator=None,
) -> dict[str, Any]:
    """Run phases in order on the same model (InRanker: existing queries, then synthetic queries).

    A fresh loss (`loss_factory(model)`) and optimizer per phase; each phase writes its checkpoints under
    `output_dir/<name>` and, once done, its model under `output_dir/<name>/model`. A phase already done is
    loaded instead of retrained, so a killed schedule resumes where it stopped.
    """
    from sentence_transformers import CrossEncoder

    output_dir = Path(output_dir)
    summary: dict[str, Any] = {"phases": []}
    for phase in phases:
        phase_dir = output_dir / phase.name
        done = phase_dir / PHASE_DONE_FILE
        model_dir = phase_dir / "model"
        if done.exists() and model_dir.is_dir():
            log.info("phase %s already done; loading %s", phase.name, model_dir)
            trained = CrossEncoder(str(model_dir), device=str(model.device), local_files_only=True)
            model.load_state_dict(trained.state_dict())
            summary["phases"].append(json.loads(done.read_text(encoding="utf-8")))
            continue
        phase_settings = phase.settings or settings or TrainSettings()
        trainer = train(model, loss_factory(model), phase.rows, phase_dir, phase_settings, evaluator)
        model.save_pretrained(str(model_dir))
        record = {
            "name": phase.name,
            "rows": len(phase.rows),
            "steps": trainer.state.global_step,
            "train_loss": next(
                (h["train_loss"] for h in reversed(trainer.state.log_history) if "train_loss" in h), None
            ),
            "log_history": trainer.state.log_history,
        }
        done.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
        summary["phases"].append(record)
    return summary
