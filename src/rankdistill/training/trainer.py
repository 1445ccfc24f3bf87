"""Training on the Hugging Face Trainer, through sentence-transformers' CrossEncoderTrainer.

The Trainer already gives the loop, checkpoints and resume, mixed precision, gradient accumulation and
multi-device (accelerate); this module adds what distillation needs on top:
- the loss-owned parameters (e.g. the Term Control Layer) go into every checkpoint and come back on
  resume, although they are never part of the saved model;
- crash safety: a checkpoint counts only once a marker written after its last file says so, and
  resume takes the newest complete one; a non-finite loss stops training before NaN weights exist;
- the device from `rankdistill.hardware.resolve_device` (`TrainSettings.device`, "auto": a GPU when there
  is one) and mixed precision from `rankdistill.hardware.training_precision` (bf16 where the CPU or GPU
  has native bf16, fp16 on older GPUs, fp32 otherwise), seeded data order;
- a two-phase schedule (phase 1 on existing training queries, phase 2 on synthetic queries, as
  InRanker), each phase in its own folder, skipped when done and resumed from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from torch import nn

from rankdistill.errors import RankdistillError
from rankdistill.hardware import resolve_device, training_precision
from rankdistill.utils import set_seed

log = logging.getLogger(__name__)

LOSS_STATE_FILE = "loss_state.safetensors"
PHASE_DONE_FILE = "phase_done.json"
CHECKPOINT_DONE_FILE = "checkpoint_complete.json"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Temp file + rename: a kill leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n", encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, path)


def mark_checkpoint_complete(folder: Path, step: int) -> None:
    """Written after every other file of the checkpoint, so a checkpoint killed half-way has none."""
    files = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.name != CHECKPOINT_DONE_FILE:
            _fsync(f)
            files[f.name] = f.stat().st_size
    write_json_atomic(folder / CHECKPOINT_DONE_FILE, {"step": step, "files": files})
    _fsync(folder)


def checkpoint_is_complete(folder: Path) -> bool:
    """Its marker is there and every file it lists has the size it had (a partial delete fails this)."""
    try:
        files = json.loads((folder / CHECKPOINT_DONE_FILE).read_text(encoding="utf-8"))["files"]
        return bool(files) and all((folder / n).stat().st_size == size for n, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def last_complete_checkpoint(output_dir: Path, remove_incomplete: bool = True) -> str | None:
    """The newest complete checkpoint; incomplete ones (a kill while writing or deleting them) are
    removed, so neither resume nor checkpoint rotation ever takes them for real ones."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    steps = {}
    for d in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        suffix = d.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if d.is_dir() and suffix.isdigit():
            steps[d] = int(suffix)
    newest = None
    for d in sorted(steps, key=steps.get, reverse=True):
        if checkpoint_is_complete(d):
            newest = newest or str(d)
        elif remove_incomplete:
            log.warning("%s is incomplete (the run was killed while writing it); removing it", d)
            shutil.rmtree(d, ignore_errors=True)
    return newest


def save_complete_checkpoint(trainer, trial, save, before_mark=None) -> None:
    """`save()` (the HF Trainer's own checkpoint) with rotation held off, then `before_mark(folder)` (state
    the Trainer does not save), the completion marker, and only then the rotation of old checkpoints: a
    checkpoint killed half-way never costs the last complete one. Shared by the encoder and decoder trainers."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

    limit = trainer.args.save_total_limit
    trainer.args.save_total_limit = None
    try:
        save()
    finally:
        trainer.args.save_total_limit = limit
    if not trainer.args.should_save:
        return
    run_dir = Path(trainer._get_output_dir(trial=trial))
    folder = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
    if before_mark is not None:
        before_mark(folder)
    mark_checkpoint_complete(folder, trainer.state.global_step)
    rotate_checkpoints(
        output_dir=str(run_dir),
        save_total_limit=limit,
        best_model_checkpoint=trainer.state.best_model_checkpoint,
        use_mtime=True,
    )


def check_finite_weights(model: nn.Module, where: str) -> None:
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise RankdistillError(
            f"{where}: {len(bad)} weight tensors hold NaN or inf (first: {bad[0]}); refusing to save them"
        )


def is_main_process() -> bool:
    """Whether this process writes the files every process would write alike (phase markers, the saved
    student): the only process, or rank 0 under `accelerate launch` / `torchrun` (which set RANK before
    the process group exists)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def wait_for_everyone() -> None:
    """A barrier across the processes of a distributed run (nothing in a single process): what rank 0
    wrote is there before any process goes on to read it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def loss_only_parameters(loss: nn.Module, model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters a loss owns besides the model's (e.g. the TCL's)."""
    model_params = {id(p) for p in model.parameters()}
    return [p for p in loss.parameters() if p.requires_grad and id(p) not in model_params]


def average_gradients(params: Sequence[torch.Tensor]) -> None:
    """Average `params`' gradients over the processes of a distributed run, as DistributedDataParallel
    does for the parameters of the model it wraps (a missing gradient counts as zeros)."""
    import torch.distributed as dist

    if not params or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).clone()
        offset += n


def loss_only_state(loss: nn.Module, model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a loss owns besides the model's (e.g. the TCL's weights)."""
    model_tensors = {id(t) for t in model.state_dict(keep_vars=True).values()}
    return {
        k: v.detach().cpu().contiguous()
        for k, v in loss.state_dict(keep_vars=True).items()
        if id(v) not in model_tensors
    }


class DistillationTrainer(CrossEncoderTrainer):
    """CrossEncoderTrainer whose checkpoints also hold the loss's own parameters.

    Data-parallel (`accelerate launch`, `torchrun`): the Trainer wraps the student in
    DistributedDataParallel and sentence-transformers puts the wrapper into `loss.model`; the losses run
    the student's forward pass through it (`losses.base.encode_pairs`), so DDP averages the student's
    gradients over the processes, and `training_step` averages those of the loss's own parameters (the
    Term Control Layer), which no wrapper holds. A step then trains on `processes x batch_size` rows."""

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True):
        """bf16 (or fp16) autocast around the loss. The Trainer leaves autocast to accelerate, which wraps
        only the prepared model's `forward`; rankdistill's losses once called the inner Hugging Face model
        directly and ran in fp32 (measured: a step took as long with bf16 on as off), and the loss's own
        layers (the TCL) run outside that `forward` still. fp16's loss scaling stays accelerate's (its
        GradScaler, in `backward`)."""
        if self.args.bf16 or self.args.fp16:
            dtype = torch.bfloat16 if self.args.bf16 else torch.float16
            return torch.autocast(self.args.device.type, dtype=dtype, cache_enabled=cache_enabled)
        return super().autocast_smart_context_manager(cache_enabled)

    def _loss_modules(self) -> nn.Module:
        return nn.ModuleDict(self.loss) if isinstance(self.loss, dict) else self.loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.world_size > 1 and self.accelerator.sync_gradients:
            # DDP averaged the student's gradients; the loss's own layers are not in the wrapper
            average_gradients(loss_only_parameters(self._loss_modules(), self.model))
        # stop before the optimizer applies a NaN gradient (the Trainer would drop the loss from its
        # logs and go on, saving NaN weights)
        value = float(loss.detach().float().sum())
        if not math.isfinite(value):
            step = self.state.global_step + 1
            raise RankdistillError(
                f"{self.args.output_dir}: the training loss became {value} at step {step}; "
                "check the labels and the learning rate (nothing from this step on was saved)"
            )
        return loss

    def _save_checkpoint(self, model, trial) -> None:
        """The HF checkpoint, then the loss's own state, then the completion marker; old checkpoints are
        rotated out only once the new one is complete."""
        from safetensors.torch import save_file

        check_finite_weights(self.model, f"checkpoint at step {self.state.global_step}")

        def save_loss_state(folder: Path) -> None:
            state = loss_only_state(self._loss_modules(), self.model)
            if state:
                save_file(state, str(folder / LOSS_STATE_FILE))

        save_complete_checkpoint(
            self,
            trial,
            lambda: super(DistillationTrainer, self)._save_checkpoint(model, trial),
            save_loss_state,
        )

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
    device: str = "auto"  # see rankdistill.hardware.resolve_device
    extra: dict[str, Any] = field(default_factory=dict)  # any other CrossEncoderTrainingArguments field


def trainer_device_problem(device: Any) -> str | None:
    """Why the Hugging Face Trainer cannot train on a resolved device, or None. It takes the CPU, MPS or
    the first visible GPU (one process a GPU under accelerate or torchrun), never a GPU by index."""
    device = torch.device(device)
    if device.type == "cuda" and device.index not in (None, 0):
        return (
            f"{device}: the Hugging Face Trainer trains on the first visible GPU; choose the GPU with "
            f"CUDA_VISIBLE_DEVICES={device.index} and device cuda (or accelerate launch for several)"
        )
    return None


def precision_arguments(device: Any, bf16: bool | str, precision: str | None | bool = True) -> dict[str, Any]:
    """The Trainer's device and mixed-precision arguments for a resolved device: `use_cpu` only on the
    CPU, `bf16`/`fp16` from `precision` ("bf16", "fp16", None for fp32; True: ask
    `rankdistill.hardware.training_precision` for this `bf16` setting on this machine)."""
    device = torch.device(device)
    if precision is True:
        precision = training_precision(device, bf16)
    return {"use_cpu": device.type == "cpu", "bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(
    settings: TrainSettings,
    output_dir: str | Path,
    evaluate: bool,
    device: Any = None,
    precision: str | None | bool = True,
) -> CrossEncoderTrainingArguments:
    """The Trainer's arguments for `settings`. `device`: a `torch.device` is taken as it is, a name is
    resolved (`rankdistill.hardware.resolve_device`), None resolves `settings.device`; `precision`: see
    `precision_arguments`."""
    if not isinstance(device, torch.device):
        device = resolve_device(settings.device if device is None else device)
    problem = trainer_device_problem(device)
    if problem is not None:
        raise RankdistillError(f"device {problem}")
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
        **precision_arguments(device, settings.bf16, precision),
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
    With `settings.resume`, an interrupted run continues from its newest complete checkpoint in
    `output_dir` (a checkpoint killed half-written is removed).
    For a listwise loss, pair rows are grouped by query and `batch_size` still counts pairs: a step
    takes `batch_size // group size` queries (at least one).
    """
    from rankdistill.students.hybrid import COLUMN, mix_of
    from rankdistill.training.data import group_rows, to_dataset
    from rankdistill.training.losses import needs_groups

    settings = settings or TrainSettings()
    if mix_of(model) is not None and COLUMN not in columns:
        columns = (*columns, COLUMN)  # a hybrid student's loss adds the first-stage term (students.hybrid)
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
    checkpoint = None
    if settings.resume:
        checkpoint = last_complete_checkpoint(output_dir, remove_incomplete=args.should_save)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    check_finite_weights(model, f"{output_dir}: the trained model")
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

    from rankdistill.students.hybrid import load_mix, save_mix

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
            load_mix(model, model_dir)
            summary["phases"].append(json.loads(done.read_text(encoding="utf-8")))
            continue
        phase_settings = phase.settings or settings or TrainSettings()
        # the loss's own layers start the same whether earlier phases ran now or in a killed run
        set_seed(phase_settings.seed)
        trainer = train(model, loss_factory(model), phase.rows, phase_dir, phase_settings, evaluator)
        record = {
            "name": phase.name,
            "rows": len(phase.rows),
            "steps": trainer.state.global_step,
            "train_loss": next(
                (h["train_loss"] for h in reversed(trainer.state.log_history) if "train_loss" in h), None
            ),
            "log_history": trainer.state.log_history,
        }
        if trainer.args.should_save:  # one process writes (every process of a DDP run has the same model)
            model.save_pretrained(str(model_dir))
            save_mix(model, model_dir)
            write_json_atomic(done, record)
        wait_for_everyone()
        summary["phases"].append(record)
    return summary


#: how a hybrid student's first-stage weight starts (`start_hybrid`)
HYBRID_STARTS = ("zero", "fit")


def start_hybrid(model, rows: Sequence[dict[str, Any]], loss: nn.Module, depth: int, start: str = "zero"):
    """Make `model` a hybrid student (`rankdistill.students.hybrid`). Its first-stage weight starts at
    0 (`start="zero"`: the encoder learns the teacher's whole score, as a plain student, and `refit_hybrid`
    sets the weight once it is trained) or at the least-squares fit of the rows' group-centred labels on
    the feature in the units of `loss` (`"fit"`: the encoder starts on the residual). Measured on scifact
    (README, "The distillation experiment"): with "fit" a MiniLM-L6 encoder never left its initial
    plateau in 19k pairs (its score stayed constant and the student ranked exactly as BM25): what BM25
    misses is a weaker, harder signal to start from than the teacher's whole score."""
    from rankdistill.students.hybrid import FirstStageMix, attach_mix, least_squares_weight

    if start not in HYBRID_STARTS:
        raise ValueError(f"start must be one of {HYBRID_STARTS}, got {start!r}")
    groups = _hybrid_groups(rows)
    weight = 0.0
    if start == "fit":
        weight = least_squares_weight(
            [(labels, feats) for labels, feats, _ in groups.values()], _label_scale(loss)
        )
    log.info("hybrid student: first-stage weight starts at %.4f (%s, depth %d)", weight, start, depth)
    return attach_mix(model, FirstStageMix(weight, depth))


def _hybrid_groups(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[list[float], list[float], list[str]]]:
    """Each query's (labels, first-stage features, documents) of a hybrid student's rows."""
    from rankdistill.students.hybrid import COLUMN

    groups: dict[str, tuple[list[float], list[float], list[str]]] = {}
    for i, r in enumerate(rows):
        if COLUMN not in r:
            raise RankdistillError(
                f"training row {i} has no {COLUMN!r} value; a hybrid student trains on rows with the "
                "normalised first-stage score of each pair"
            )
        label = r["label"]
        value = label[1] - label[0] if isinstance(label, (list, tuple)) else label
        labels, feats, docs = groups.setdefault(r["query"], ([], [], []))
        labels.append(float(value))
        feats.append(float(r[COLUMN]))
        docs.append(r["document"])
    return groups


def _label_scale(loss: nn.Module) -> float:
    """What the loss multiplies labels by before comparing them with scores (1 / its temperature)."""
    temperatures = [
        float(m.temperature)
        for m in loss.modules()
        if isinstance(getattr(m, "temperature", None), (int, float))
    ]
    return 1.0 / temperatures[0] if temperatures else 1.0


def refit_hybrid(
    model, rows: Sequence[dict[str, Any]], loss: nn.Module, max_queries: int = 256, seed: int = 0
):
    """After training, a hybrid student's first-stage weight set to the least-squares optimum for its
    trained encoder on a seeded sample of the training queries (MarginMSE's objective in the weight
    alone). Why: the weight is one parameter among millions and moves by about the learning rate a step,
    so training leaves it near its start although the encoder has changed what it needs. Only for losses
    that compare score margins with label margins (`margin_mse`): a scale-free loss (RankNet, ListNet)
    has no such optimum. Returns (weight before, weight after); None when not refitted."""
    import random

    from rankdistill.students.encoder import student_scores
    from rankdistill.students.hybrid import least_squares_weight, mix_of
    from rankdistill.training.losses.margin_mse import MarginMSELoss

    mix = mix_of(model)
    if mix is None or not any(isinstance(m, MarginMSELoss) for m in loss.modules()):
        return None
    groups = _hybrid_groups(rows)
    queries = sorted(groups)
    queries = sorted(random.Random(seed).sample(queries, min(max_queries, len(queries))))
    pairs = [(q, d) for q in queries for d in groups[q][2]]
    scores = iter(student_scores(model, pairs, encoder_only=True).tolist())
    sample = [(groups[q][0], groups[q][1], [next(scores) for _ in groups[q][2]]) for q in queries]
    before = float(mix.weight.detach())
    after = least_squares_weight(sample, _label_scale(loss))
    with torch.no_grad():
        mix.weight.fill_(after)
    log.info(
        "hybrid student: first-stage weight refitted %.4f -> %.4f on %d queries", before, after, len(queries)
    )
    return before, after
