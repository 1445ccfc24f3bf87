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
    device: auto    # a CUDA GPU when one is visible, else MPS, else the CPU; or cpu, cuda, mps

The decoder student (RRADistill's decoder with a ranking head, ReasoningRank's student that explains)
is `student: {type: decoder, ...}` (see `DecoderStudentConfig`); it trains with its own joint loss, so
it takes no `losses`, and its phases' data may add comparison reasoning:

    student: {type: decoder, backbone: gemma3-270m, rank_loss: listnet, lm_weight: 0.5}
    phases:
      - {name: train_queries, data: {jsonl: labels/train_queries.jsonl,
                                     comparisons: labels/train_queries.comparisons.jsonl}}
    training: {batch_size: 16, max_steps: 200}   # learning_rate defaults to 2e-4 for the decoder (LoRA)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from rankdistill.errors import RankdistillError
from rankdistill.hardware import check_device_name
from rankdistill.validation import key_error, read_yaml, validate_config, validation_error_lines


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _foreign_keys(data: Any, other: type[BaseModel], other_type: str, this_type: str) -> Any:
    """A key of the other student type gets an error that says so, not just 'extra input'."""
    if isinstance(data, dict):
        mine = set(_STUDENT_CLASSES[this_type].model_fields)
        theirs = sorted(k for k in data if k in other.model_fields and k not in mine)
        if theirs:
            raise ValueError(
                f"{', '.join(map(repr, theirs))} {'is a setting' if len(theirs) == 1 else 'are settings'} "
                f"of the {other_type} student (type: {other_type}), not of the {this_type} student; "
                f"its settings are {', '.join(sorted(mine))}"
            )
    return data


class StudentConfig(_Strict):
    """The encoder student: a cross-encoder cut from `base` (its first `num_layers`, or `layers`)."""

    type: Literal["encoder"] = "encoder"
    base: str = "minilm"
    num_layers: int | None = Field(default=None, ge=1)  # keep the first N layers
    layers: list[int] | None = Field(default=None, min_length=1)  # or keep these (e.g. [0, 5])
    num_labels: Literal[1, 2] = 1
    max_length: int = Field(default=256, ge=16, le=8192)
    # a hybrid student (rankdistill.students.hybrid): score = logit + w * the first-stage score min-max
    # scaled over the query's top `hybrid_depth` candidates (the depth the labels covered); rows need a
    # `first_stage` value, and so does every reranking with the trained student
    hybrid: bool = False
    hybrid_depth: int = Field(default=30, ge=2)
    # its weight starts at 0 and is refitted after training, or at the least-squares fit (see
    # rankdistill.training.trainer.start_hybrid for what each gave)
    hybrid_start: Literal["zero", "fit"] = "zero"

    @model_validator(mode="before")
    @classmethod
    def _no_decoder_keys(cls, data: Any) -> Any:
        return _foreign_keys(data, DecoderStudentConfig, "decoder", "encoder")

    @model_validator(mode="after")
    def _one_layer_choice(self):
        if self.num_layers is not None and self.layers is not None:
            raise ValueError("give num_layers (the first N layers) or layers (which ones), not both")
        return self


#: the decoder's ranking losses (`rankdistill.training.losses.joint.RANK_LOSSES`)
DECODER_RANK_LOSSES = ("mse", "ranknet", "listnet", "plistmle")


class DecoderStudentConfig(_Strict):
    """The decoder student (`rankdistill.students.decoder.DecoderStudent`): a causal LM with LoRA and a
    ranking head, trained on ranking and reasoning at once (`JointRankLMLoss`). Each query's rows become
    one group of at most `group_size` documents (its `top` best by label, the rest drawn at random).
    ListNet compares softmaxes of the labels divided by `temperature`: 1 suits log-odds labels, ~0.1
    labels in [0, 1] (the pipeline's min-max targets)."""

    type: Literal["decoder"]
    backbone: str = "gemma3-270m"  # alias, HF causal-LM folder or .gguf file
    prompt: str | None = (
        None  # None: the student's default ("Query: {query}\nDocument: {document}\nRelevant:")
    )
    comparison_prompt: str | None = None  # None: the default, with {query}, {document_a}, {document_b}
    max_query_tokens: int = Field(default=32, ge=1, le=4096)
    max_doc_tokens: int = Field(default=160, ge=1, le=8192)
    max_reasoning_tokens: int = Field(default=64, ge=1, le=4096)
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_target_modules: list[str] | None = Field(default=None, min_length=1)  # None: attention and MLP
    group_size: int = Field(default=8, ge=1)
    top: int = Field(default=2, ge=0)
    rank_loss: Literal["mse", "ranknet", "listnet", "plistmle"] = "listnet"
    rank_weight: float = Field(default=1.0, ge=0)
    lm_weight: float = Field(default=0.5, ge=0)
    comparison_weight: float = Field(default=0.5, ge=0)
    temperature: float = Field(default=1.0, gt=0)
    head_learning_rate: float | None = Field(default=1e-3, gt=0)  # None: the LoRA learning rate
    merge: bool = False  # save the LoRA merged into full backbone weights (bigger; no adapter at load)

    @model_validator(mode="before")
    @classmethod
    def _no_encoder_keys(cls, data: Any) -> Any:
        return _foreign_keys(data, StudentConfig, "encoder", "decoder")

    @model_validator(mode="after")
    def _consistent(self):
        if self.rank_weight + self.lm_weight == 0:
            raise ValueError("rank_weight and lm_weight are both 0: nothing to train on the ranking rows")
        if self.top > self.group_size:
            raise ValueError(f"top ({self.top}) is more than group_size ({self.group_size})")
        if self.prompt is not None or self.comparison_prompt is not None:
            from rankdistill.students.decoder import DecoderConfig

            DecoderConfig(**self.decoder_config())  # raises ValueError naming the prompt
        return self

    def decoder_config(self) -> dict[str, Any]:
        """The `DecoderConfig` fields it sets (the rest keep the student's defaults)."""
        keys = (
            "backbone",
            "prompt",
            "comparison_prompt",
            "max_query_tokens",
            "max_doc_tokens",
            "max_reasoning_tokens",
            "lora_r",
            "lora_alpha",
            "lora_dropout",
            "lora_target_modules",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


_STUDENT_CLASSES: dict[str, type[BaseModel]] = {"encoder": StudentConfig, "decoder": DecoderStudentConfig}


def _student_type(value: Any) -> str:
    return value.get("type", "encoder") if isinstance(value, dict) else getattr(value, "type", "encoder")


AnyStudentConfig = Annotated[
    Annotated[StudentConfig, Tag("encoder")] | Annotated[DecoderStudentConfig, Tag("decoder")],
    Discriminator(
        _student_type,
        custom_error_type="student_type",
        custom_error_message="type: expected 'encoder' (the default) or 'decoder'",
    ),
]


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


#: the kind of label (`rankdistill.training.losses.LABELS`, or "scalar": a number of unknown range) each
#: `DataConfig.label` gives rows from the label store: "probability" takes the stored score as it is
STORE_LABELS = {"minmax": "probability", "probability": "scalar", "logits": "logits"}


class DataConfig(_Strict):
    """Where a phase's (query, document, label) rows come from: a JSONL file, or the label store (whose
    records name document ids, resolved against `dataset`'s corpus)."""

    jsonl: Path | None = None
    label_store: Path | None = None
    # comparison reasoning rows (decoder student only): {"query_id", "query", "document_a", "document_b",
    # "better": "A" | "B", "reason"}
    comparisons: Path | None = None
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


#: the decoder's LoRA learning rate when the config gives none (the encoder's default, 5e-5, is a
#: full fine-tune's)
DECODER_LEARNING_RATE = 2e-4


class TrainConfig(_Strict):
    output_dir: Path
    seed: int = 42
    student: AnyStudentConfig = Field(default_factory=StudentConfig)
    losses: list[LossConfig] = Field(default_factory=lambda: [LossConfig(name="soft_bce")], min_length=1)
    phases: list[PhaseConfig] = Field(min_length=1)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    dev: DevConfig | None = None
    data_dir: Path | None = None
    # where the student trains: auto (a CUDA GPU when one is visible, else MPS, else the CPU), cpu, cuda,
    # mps (rankdistill.hardware.resolve_device); the Trainer takes the first visible GPU
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device_name(cls, device: str) -> str:
        try:
            return check_device_name(device)
        except RankdistillError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="wrap")
    @classmethod
    def _plain_student_keys(cls, data: Any, handler):
        """Errors name `student.lora_r`, not pydantic's `student.decoder.lora_r` (the union's tag)."""
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            if not any(len(e["loc"]) > 1 and e["loc"][0] == "student" for e in errors):
                raise
            details = []
            for e in errors:
                loc = tuple(e["loc"])
                if len(loc) > 1 and loc[0] == "student" and loc[1] in _STUDENT_CLASSES:
                    loc = loc[:1] + loc[2:]
                details.append(
                    InitErrorDetails(type=e["type"], loc=loc, input=e["input"], ctx=e.get("ctx", {}))
                )
            raise ValidationError.from_exception_data(exc.title, details) from None

    @model_validator(mode="after")
    def _phases(self):
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        if self.student.type == "decoder":
            self._decoder_only_keys()
        else:
            for p in self.phases:
                if p.data.comparisons is not None:
                    raise ValueError(
                        f"phase {p.name!r}: data.comparisons (comparison reasoning) trains the decoder "
                        "student only; set student.type: decoder or remove it"
                    )
            self._losses_fit_the_rows()
        for p in self.phases:
            try:
                TrainingConfig(**{**self.training.model_dump(), **p.training})
            except ValidationError as exc:
                raise ValueError(
                    f"phase {p.name!r}: bad 'training' override: {validation_error_lines(exc)[0]}"
                ) from None
        return self

    def loss_problem(self, labels: str | None = None) -> tuple[int, str] | None:
        """The first of `losses` (its index, and why) that cannot train this student on pair rows whose
        labels are of kind `labels` (see `rankdistill.training.losses.loss_problem`; None: not known);
        None when every one can. The decoder student trains with its joint loss, not with `losses`."""
        if self.student.type == "decoder":
            return None
        from rankdistill.training.losses import loss_problem

        for i, spec in enumerate(self.losses):
            problem = loss_problem(spec.name, num_labels=self.student.num_labels, labels=labels)
            if problem is not None:
                return i, problem
        return None

    def _losses_fit_the_rows(self) -> None:
        """What is known before any row is read: the student, and the labels of label-store phases
        (`rankdistill train` checks JSONL labels once read, before the student loads)."""
        from rankdistill.training.losses import LABELS

        found, why = self.loss_problem(), ""
        for j, p in enumerate(self.phases):
            if found is None and p.data.label_store is not None:
                kind = STORE_LABELS[p.data.label]
                found = self.loss_problem(kind)
                gives = LABELS.get(kind, "the stored scores as they are")
                why = f"; phases.{j}.data.label: {p.data.label} gives {gives}"
        if found is not None:
            i, problem = found
            raise key_error("TrainConfig", ("losses", i, "name"), problem + why)

    def _decoder_only_keys(self) -> None:
        if [x.model_dump() for x in self.losses] != [LossConfig(name="soft_bce").model_dump()]:
            raise ValueError(
                "losses: the decoder student trains with its joint loss; set rank_loss, rank_weight, "
                "lm_weight, comparison_weight and temperature under student instead"
            )
        if self.dev is not None:
            raise ValueError(
                "dev: no dev evaluation during training for the decoder student yet; remove 'dev' "
                "(the pipeline's evaluate stage measures the trained student)"
            )
        if "learning_rate" not in self.training.model_fields_set:
            self.training.learning_rate = DECODER_LEARNING_RATE

    def phase_training(self, phase: PhaseConfig) -> TrainingConfig:
        return TrainingConfig(**{**self.training.model_dump(), **phase.training})


def parse_config(data: Any, source: str = "config") -> TrainConfig:
    """Validate a config mapping; errors say which key and what was expected."""
    return validate_config(TrainConfig, data, source, "training config")


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML training config (relative paths in it are relative to the working
    directory, like the CLI's own arguments)."""
    return parse_config(read_yaml(path), str(path))
