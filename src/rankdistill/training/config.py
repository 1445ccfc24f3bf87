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

from rankdistill.errors import RankdistillError
from rankdistill.validation import validate_config


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
                    f"phase {p.name!r}: bad 'training' override: {exc.errors()[0]['msg']}"
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


# A config is a few hundred nodes; these bounds only stop hostile files ("billion laughs": a 1 KB file of
# nested aliases that expands to billions of nodes, or nesting deep enough to exhaust the stack).
MAX_YAML_NODES = 20_000
MAX_YAML_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(path: str | Path, error: type[Exception] = RankdistillError) -> Any:
    """The YAML file at `path` (None when empty), or `error` with one line naming the file."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: config file not found")
    if path.is_dir():
        raise error(f"{path}: is a folder; expected a YAML config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 (byte {exc.start}); expected a YAML text file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_yaml(text, str(path), error)


def parse_yaml(text: str, source: str, error: type[Exception] = RankdistillError) -> Any:
    """`yaml.safe_load(text)` that also refuses duplicate keys (YAML would keep only the last) and
    aliases expanding beyond MAX_YAML_NODES; every failure is `error` in one line naming `source`."""
    import yaml

    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_tree(node, source, error)
        return loader.construct_document(node)
    except error:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        col = f" (column {mark.column + 1})" if mark else ""
        raise error(f"{where}: invalid YAML: {exc.problem or exc.context}{col}") from None
    except yaml.YAMLError as exc:
        raise error(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise error(f"{source}: invalid YAML: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. a date such as 2024-02-31
        raise error(f"{source}: invalid YAML value: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_yaml_tree(root, source: str, error: type[Exception]) -> None:
    """Count the nodes `root` expands to (an alias counts its whole target, every time), bound the
    depth, and find duplicate keys, all before anything is constructed."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def fail(node, message: str):
        raise error(f"{source}:{node.start_mark.line + 1}: {message}")

    def size(node, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > MAX_YAML_DEPTH:
            fail(node, f"nested more than {MAX_YAML_DEPTH} levels deep; a config is a few levels")
        if id(node) in active:
            fail(node, "an alias refers to a node that contains it (a recursive alias)")
        active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            children = []
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    ident = (key.tag, key.value)
                    if ident in seen:
                        fail(
                            key,
                            f"duplicate key {key.value!r} (first on line {seen[ident]}); a key may appear once",
                        )
                    seen[ident] = key.start_mark.line + 1
                children += (key, value)
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_YAML_NODES:
                fail(node, f"expands to more than {MAX_YAML_NODES} values (nested aliases?); refusing it")
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root, 0)
