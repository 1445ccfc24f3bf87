"""The training config (`rankdistill train CONFIG`), validated by pydantic; errors name the key.

Example (configs/distill_scifact.yaml holds a complete one):

    output_dir: runs/scifact-student
    seed: 42
    student: {base: minilm, num_layers: 6, max_length: 256}
    losses:
      - {name: soft_bce, weight: 1.0}
      - {name: term_control, weight: 0.5}
    phases:
      - {name: phase1, data: {jsonl: labels/train_queries.jsonl}}
      - {name: phase2, data: {label_store: labels.sqlite, dataset: scifact, teacher: bm25+minilm}}
    training: {batch_size: 32, learning_rate: 5.0e-5, epochs: 1}
    dev: {dataset: scifact, split: train, max_queries: 50, k: 30}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rankdistill.validation import read_yaml, validate_config, validation_error_lines


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudentConfig(_Strict):
    type: Literal["encoder"] = "encoder"
    base: str = "minilm"
    num_layers: int | None = Field(default=None, ge=1)  # keep the first N layers
    layers: list[int] | None = Field(default=None, min_length=1)  # or keep these (e.g. [0, 5])
    num_labels: Literal[1, 2] = 1
    max_length: int = Field(default=256, ge=16, le=8192)

    @model_validator(mode="after")
    def _one_layer_choice(self):
        if self.num_layers is not None and self.layers is not None:
            raise ValueError("give num_layers (the first N layers) or layers (which ones), not both")
        return self


class LossConfig(_Strict):
    name: str
    weight: float = Field(default=1.0, gt=0)
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from rankdistill.training.losses import get_loss, loss_names

        try:
            get_loss(name)
        except KeyError:
            raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(loss_names())}") from None
        return name


class DataConfig(_Strict):
    """Where a phase's (query, document, label) rows come from: a JSONL file, or the label store (whose
    records name document ids, resolved against `dataset`'s corpus)."""

    jsonl: Path | None = None
    label_store: Path | None = None
    dataset: str | None = None
    teacher: str | None = None  # label store: the teacher name or id to take labels from
    label: Literal["probability", "logits", "minmax"] = "minmax"
    max_rows: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.jsonl is None) == (self.label_store is None):
            raise ValueError("give exactly one of 'jsonl' or 'label_store'")
        if self.label_store is not None and self.dataset is None:
            raise ValueError("'label_store' needs 'dataset' (the corpus the stored document ids belong to)")
        return self


class TrainingConfig(_Strict):
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=5e-5, gt=0)
    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    bf16: bool | Literal["auto"] = "auto"
    logging_steps: int = Field(default=20, ge=1)
    save_steps: int = Field(default=200, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    eval_steps: int | None = Field(default=None, ge=1)
    resume: bool = True


class PhaseConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    data: DataConfig
    training: dict[str, Any] = Field(default_factory=dict)  # overrides of the top-level `training` keys


class DevConfig(_Strict):
    """nDCG@10 during training: BM25 top-k of (at most) `max_queries` queries of a split with qrels."""

    dataset: str
    split: str = "dev"
    max_queries: int = Field(default=100, ge=1)
    k: int = Field(default=30, ge=1)
    data_dir: Path | None = None


class TrainConfig(_Strict):
    output_dir: Path
    seed: int = 42
    student: StudentConfig = Field(default_factory=StudentConfig)
    losses: list[LossConfig] = Field(default_factory=lambda: [LossConfig(name="soft_bce")], min_length=1)
    phases: list[PhaseConfig] = Field(min_length=1)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    dev: DevConfig | None = None
    data_dir: Path | None = None

    @model_validator(mode="after")
    def _phases(self):
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        for p in self.phases:
            try:
                TrainingConfig(**{**self.training.model_dump(), **p.training})
            except ValidationError as exc:
                raise ValueError(
                    f"phase {p.name!r}: bad 'training' override: {validation_error_lines(exc)[0]}"
                ) from None
        return self

    def phase_training(self, phase: PhaseConfig) -> TrainingConfig:
        return TrainingConfig(**{**self.training.model_dump(), **phase.training})


def parse_config(data: Any, source: str = "config") -> TrainConfig:
    """Validate a config mapping; errors say which key and what was expected."""
    return validate_config(TrainConfig, data, source, "training config")


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML training config (relative paths in it are relative to the working
    directory, like the CLI's own arguments)."""
    return parse_config(read_yaml(path), str(path))
