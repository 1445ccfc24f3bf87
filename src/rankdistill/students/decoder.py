"""Decoder student (RRA-GPT / ReasoningRank): a causal LM with LoRA and a light ranking head.

The backbone is any local Hugging Face causal LM folder, or a GGUF file that transformers dequantizes
(Gemma 3 270M ships as one: `DecoderStudent.from_backbone("gemma3-270m")`). The input is one prompt,

    Query: {query}
    Document: {document}
    Relevant:

and the ranking head (one linear layer) reads the final hidden state of its last token. In training
the teacher's reasoning follows that prompt and the LM loss is taken on it (see
`rankdistill.training.losses.joint`); scoring never generates, it runs the prompt only, batched,
in bf16 where the CPU supports it. `explain()` generates the reasoning on request.

Comparison reasoning (ReasoningRank) has its own prompt, LM target only (no score):

    Query: {query}
    Document A: {document_a}
    Document B: {document_b}
    More relevant:

with the target " A. <why>" or " B. <why>"; `compare()` generates it and `parse_comparison` reads it.

Sequences are right-padded and the score is gathered at each row's own last prompt token, so the
score of a pair does not depend on what else is in its batch or on how long its reasoning was.

Saved folder (what `Reranker.load(path)` detects by `rankdistill.json`):

    rankdistill.json            {"student_type": "decoder", "backbone": ..., "weights": "adapter"|"merged", ...}
    adapter/                    peft LoRA adapter (safetensors), when weights == "adapter"
    backbone/                   the merged causal LM (safetensors), when weights == "merged"
    ranking_head.safetensors    the head's weight and bias
    tokenizer files

Training it (data, collator, Trainer) is `rankdistill.training.decoder`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankdistill.errors import RankdistillError, require
from rankdistill.hardware import pick_dtype, resolve_device
from rankdistill.llm.gguf import gguf_as_folder, save_causal_lm
from rankdistill.models import resolve_model
from rankdistill.students.metadata import METADATA_FILE, STUDENT_TYPES, read_metadata, write_metadata
from rankdistill.utils import batched, progress, set_seed

logger = logging.getLogger(__name__)

STUDENT_TYPE = "decoder"
HEAD_NAME = "ranking_head.safetensors"
DEFAULT_PROMPT = "Query: {query}\nDocument: {document}\nRelevant:"
DEFAULT_COMPARISON_PROMPT = (
    "Query: {query}\nDocument A: {document_a}\nDocument B: {document_b}\nMore relevant:"
)
IGNORE_INDEX = -100
# the explicit reasoning target ends with its verdict ("... Relevance: 2"; `labels.reasoning`)
_VERDICT = re.compile(r"\s*Relevance:\s*(-?\d+(?:\.\d+)?)\s*\.?\s*$")
# the comparison target starts with the letter and a mark: "A. <why>" (also "B:", "(A)", "Document B:")
_COMPARISON = re.compile(r"^\W*(?:Document\s+)?\(?([AB])(?:[.:)]|\s*$)\s*(.*)$", re.DOTALL)


COMPARE_FIELDS = ("query", "document_a", "document_b")


@dataclass
class DecoderConfig:
    """Everything needed to rebuild the student's inputs; saved in rankdistill.json."""

    backbone: str = "gemma3-270m"  # alias, HF folder, or .gguf file, as the user gave it
    prompt: str = DEFAULT_PROMPT  # must contain {query} and {document}, in that order
    comparison_prompt: str = DEFAULT_COMPARISON_PROMPT  # {query}, {document_a}, {document_b}, in order
    max_query_tokens: int = 32
    max_doc_tokens: int = 160
    max_reasoning_tokens: int = 64
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )

    def __post_init__(self) -> None:
        for name, text, fields in (
            ("prompt", self.prompt, COMPARE_FIELDS[:1] + ("document",)),
            ("comparison_prompt", self.comparison_prompt, COMPARE_FIELDS),
        ):
            at = [text.find("{" + f + "}") for f in fields]
            if min(at) < 0 or at != sorted(at):
                wanted = " then ".join("{" + f + "}" for f in fields)
                raise ValueError(f"{name} must contain {wanted}, got {text!r}")


@dataclass
class DecoderOutput:
    scores: torch.Tensor  # [pairs], fp32
    lm_loss: torch.Tensor | None = None  # mean token cross-entropy over reasoning tokens
    lm_tokens: int = 0


def _split_backbone(name_or_path: str) -> tuple[str, str | None]:
    """(folder, gguf file name or None) for an alias, an HF folder, a .gguf file or a folder holding one."""
    resolved = Path(resolve_model(name_or_path))
    if resolved.suffix == ".gguf" and resolved.is_file():
        return str(resolved.parent), resolved.name
    if resolved.is_dir() and not (resolved / "config.json").exists():
        ggufs = sorted(resolved.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(resolved), ggufs[0].name
        if len(ggufs) > 1:
            raise RankdistillError(
                f"{resolved} holds several .gguf files; name one: {[g.name for g in ggufs]}"
            )
    return str(resolved), None


def backbone_path(name_or_path: str) -> Path:
    """The backbone's weights on disk (a .gguf file or an HF folder), e.g. to count its parameters."""
    folder, gguf_file = _split_backbone(name_or_path)
    return Path(folder) / gguf_file if gguf_file else Path(folder)


def load_causal_lm(name_or_path: str, dtype: torch.dtype = torch.float32):
    """A causal LM and its tokenizer from an alias, an HF folder or a GGUF file (converted once, cached)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_file = _split_backbone(name_or_path)
    if gguf_file is not None:
        folder = str(gguf_as_folder(Path(folder) / gguf_file, torch.float32))
    # sdpa masks padding exactly (right padding, positions 0..n-1 per row) and is faster than eager on CPU
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


class DecoderStudent(nn.Module):
    """A causal LM (LoRA-adapted) with a linear ranking head on the last prompt token."""

    def __init__(self, backbone: nn.Module, tokenizer, config: DecoderConfig, head: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.student_config = (
            config  # not `config`: the HF Trainer reads `model.config` as a PretrainedConfig
        )
        hidden = backbone.get_base_model().config.get_text_config().hidden_size
        self.head = head if head is not None else nn.Linear(hidden, 1)
        if head is None:
            nn.init.normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
        self.head.float()  # the head is tiny; keep it in fp32 whatever the backbone's dtype
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._init_templates()

    # ----------------------------------------------------------------------------------------- build
    @classmethod
    def from_backbone(
        cls,
        backbone: str = "gemma3-270m",
        config: DecoderConfig | None = None,
        seed: int = 0,
        **overrides: Any,
    ) -> DecoderStudent:
        """A fresh student: backbone weights in fp32 (for training), a new LoRA adapter and head."""
        peft = require("peft", "llm", "the decoder student's LoRA adapter")
        config = config or DecoderConfig(backbone=str(backbone), **overrides)
        set_seed(seed)
        model, tokenizer = load_causal_lm(config.backbone, torch.float32)
        lora = peft.LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            task_type="CAUSAL_LM",
        )
        return cls(peft.get_peft_model(model, lora), tokenizer, config)

    @classmethod
    def load(
        cls, path: str | Path, dtype: str | None = "auto", trainable: bool = False, device: Any = "auto"
    ) -> DecoderStudent:
        """Load a saved student onto `device` (see `rankdistill.hardware.resolve_device`; "auto": a GPU
        when there is one). dtype: weights' precision ("auto" = `pick_dtype`'s for that device, "fp32")."""
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        meta = read_student_config(path)
        config = DecoderConfig(**meta["config"])
        device = resolve_device(device)
        torch_dtype = pick_dtype(device, dtype)
        if meta.get("weights") == "merged":
            model = AutoModelForCausalLM.from_pretrained(
                path / "backbone", dtype=torch_dtype, attn_implementation="sdpa"
            )
            peft = require("peft", "llm", "the decoder student")
            # wrap in an empty-adapter PeftModel so a loaded student has the same shape as a trained one
            model = peft.PeftModel(model, peft.LoraConfig(r=1, target_modules=[], task_type="CAUSAL_LM"))
        else:
            peft = require("peft", "llm", "the decoder student's LoRA adapter")
            base, _ = load_causal_lm(config.backbone, torch_dtype)
            model = peft.PeftModel.from_pretrained(base, path / "adapter", is_trainable=trainable)
        tokenizer = AutoTokenizer.from_pretrained(path)
        state = load_file(str(path / HEAD_NAME))
        head = nn.Linear(state["weight"].shape[1], 1)
        head.load_state_dict(state)
        student = cls(model, tokenizer, config, head=head).to(device)
        if not trainable:
            student.eval()
        return student

    def save(self, path: str | Path, merge: bool = False, training: dict[str, Any] | None = None) -> Path:
        """Write the student folder; `merge=True` stores full merged weights instead of the adapter.
        `training` (what it was trained on and how) goes into rankdistill.json."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if merge:
            save_causal_lm(copy.deepcopy(self.backbone).merge_and_unload(), path / "backbone")
        else:
            self.backbone.save_pretrained(path / "adapter", safe_serialization=True)
        save_file(
            {k: v.detach().float().contiguous() for k, v in self.head.state_dict().items()},
            str(path / HEAD_NAME),
        )
        self.tokenizer.save_pretrained(path)
        meta = {
            "student_type": STUDENT_TYPE,
            "weights": "merged" if merge else "adapter",
            "config": asdict(self.student_config),
            "hidden_size": self.head.in_features,
        }
        if training:
            meta["training"] = training
        write_metadata(path, meta)
        return path

    def load_weights(self, path: str | Path) -> None:
        """Take the adapter and head of a student folder saved with `save()` (a checkpoint, or a finished
        training phase) into this student, which must have the same backbone and LoRA settings."""
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights
        from safetensors.torch import load_file

        path = Path(path)
        set_peft_model_state_dict(
            self.backbone, load_peft_weights(str(path / "adapter"), device=str(self.device))
        )
        self.head.load_state_dict(load_file(str(path / HEAD_NAME), device=str(self.device)))

    # ------------------------------------------------------------------------------------ encoding
    def _init_templates(self) -> None:
        cfg = self.student_config
        self._parts, self._space_before = self._template_parts(cfg.prompt, ("query", "document"))
        self._cmp_parts, self._cmp_space = self._template_parts(cfg.comparison_prompt, COMPARE_FIELDS)

    def _template_parts(self, template: str, fields: Sequence[str]) -> tuple[list[list[int]], list[str]]:
        """Token ids of a template's fixed pieces (one more than `fields`), and the space each field's text
        takes from the piece before it: a trailing space moves onto the text that follows ("Query: " +
        "what" -> "Query:" + " what"), which is how the tokenizer would split the joined string."""
        pieces, rest = [], template
        for f in fields:
            before, rest = rest.split("{" + f + "}", 1)
            pieces.append(before)
        pieces.append(rest)
        spaces = [" " if p.endswith(" ") else "" for p in pieces[:-1]]
        stripped = [p.rstrip(" ") for p in pieces[:-1]] + [pieces[-1]]
        return self.tokenizer(stripped, add_special_tokens=False)["input_ids"], spaces

    def _fill(
        self, parts: list[list[int]], spaces: list[str], columns: Sequence[Sequence[str]], limits
    ) -> list[list[int]]:
        """Token ids of each filled template; every field is truncated on its own, so the template's words
        (and the last token the head reads) always survive."""
        ids = [
            self.tokenizer([sp + t for t in col], add_special_tokens=False)["input_ids"]
            for sp, col in zip(spaces, columns, strict=True)
        ]
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        out = []
        for row in zip(*ids, strict=True):
            seq = bos + parts[0]
            for field_ids, limit, part in zip(row, limits, parts[1:], strict=True):
                seq = seq + field_ids[:limit] + part
            out.append(seq)
        return out

    def encode_prompts(self, queries: Sequence[str], documents: Sequence[str]) -> list[list[int]]:
        """Token ids of each (query, document) prompt."""
        cfg = self.student_config
        return self._fill(
            self._parts, self._space_before, [queries, documents], (cfg.max_query_tokens, cfg.max_doc_tokens)
        )

    def encode_comparison_prompts(
        self, queries: Sequence[str], documents_a: Sequence[str], documents_b: Sequence[str]
    ) -> list[list[int]]:
        """Token ids of each (query, document A, document B) comparison prompt."""
        cfg = self.student_config
        return self._fill(
            self._cmp_parts,
            self._cmp_space,
            [queries, documents_a, documents_b],
            (cfg.max_query_tokens, cfg.max_doc_tokens, cfg.max_doc_tokens),
        )

    def _target_ids(self, texts: Sequence[str | None]) -> list[list[int]]:
        """LM target ids (then EOS) of each text, at most `max_reasoning_tokens`; an explicit target's
        closing verdict ("Relevance: 2") survives the cut, since it is what an explanation is read for."""
        limit = self.student_config.max_reasoning_tokens
        out: list[list[int]] = [[] for _ in texts]
        todo = [i for i, t in enumerate(texts) if t and t.strip()]
        if not todo:
            return out
        bodies, verdicts = [], []
        for i in todo:
            text = " ".join(texts[i].split())
            m = _VERDICT.search(text)
            bodies.append(" " + (text[: m.start()] if m else text))
            verdicts.append(f" Relevance: {m.group(1)}" if m else "")
        body_ids = self.tokenizer(bodies, add_special_tokens=False)["input_ids"]
        verdict_ids = self.tokenizer([v or " " for v in verdicts], add_special_tokens=False)["input_ids"]
        for i, body, verdict, v in zip(todo, body_ids, verdict_ids, verdicts, strict=True):
            tail = verdict if v else []
            out[i] = body[: max(limit - len(tail), 0)] + tail[:limit] + [self.tokenizer.eos_token_id]
        return out

    def _pad(self, prompts: list[list[int]], targets: list[list[int]] | None) -> dict[str, torch.Tensor]:
        """Right-padded batch: input_ids, attention_mask, score_index (last prompt token of each row) and,
        with targets, lm_labels (-100 everywhere but the target tokens)."""
        tgt = targets if targets is not None else [[] for _ in prompts]
        width = max(len(p) + len(t) for p, t in zip(prompts, tgt, strict=True))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        labels = torch.full((len(prompts), width), IGNORE_INDEX, dtype=torch.long)
        score_index = torch.empty(len(prompts), dtype=torch.long)
        for row, (p, t) in enumerate(zip(prompts, tgt, strict=True)):
            n = len(p) + len(t)
            input_ids[row, :n] = torch.tensor(p + t)
            attention[row, :n] = 1
            if t:
                labels[row, len(p) : n] = torch.tensor(t, dtype=torch.long)
            score_index[row] = len(p) - 1
        batch = {"input_ids": input_ids, "attention_mask": attention, "score_index": score_index}
        if targets is not None:
            batch["lm_labels"] = labels
        return batch

    def encode(
        self, queries: Sequence[str], documents: Sequence[str], reasonings: Sequence[str | None] | None = None
    ) -> dict[str, torch.Tensor]:
        """Right-padded batch: input_ids, attention_mask, score_index (last prompt token of each row) and,
        with reasonings, lm_labels (-100 everywhere but the reasoning tokens and the closing EOS)."""
        prompts = self.encode_prompts(queries, documents)
        if reasonings is not None and len(reasonings) != len(prompts):
            raise ValueError(f"got {len(reasonings)} reasonings for {len(prompts)} pairs")
        return self._pad(prompts, None if reasonings is None else self._target_ids(reasonings))

    def encode_comparisons(
        self,
        queries: Sequence[str],
        documents_a: Sequence[str],
        documents_b: Sequence[str],
        targets: Sequence[str],
    ) -> dict[str, torch.Tensor]:
        """A comparison batch for the LM loss: each prompt followed by its target (" A. <why>")."""
        prompts = self.encode_comparison_prompts(queries, documents_a, documents_b)
        if len(targets) != len(prompts):
            raise ValueError(f"got {len(targets)} targets for {len(prompts)} comparisons")
        return self._pad(prompts, self._target_ids(targets))

    # ------------------------------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        score_index: torch.Tensor,
        lm_labels: torch.Tensor | None = None,
    ) -> DecoderOutput:
        base = self.backbone.get_base_model()  # LoRA layers are injected in place, so this runs them
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        last = hidden[rows, score_index]
        with torch.autocast(hidden.device.type, enabled=False):  # the head's output stays fp32 under autocast
            scores = self.head(last.float()).squeeze(-1)
        if lm_labels is None:
            return DecoderOutput(scores=scores)
        # LM loss on the reasoning tokens only: projecting just those positions onto the vocabulary
        # (262k entries for Gemma 3) instead of every position keeps memory and time small
        shift = lm_labels[:, 1:]
        keep = shift != IGNORE_INDEX
        n_tokens = int(keep.sum())
        if n_tokens == 0:
            return DecoderOutput(scores=scores, lm_loss=scores.sum() * 0.0, lm_tokens=0)
        logits = base.get_output_embeddings()(hidden[:, :-1][keep])
        cap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        lm_loss = nn.functional.cross_entropy(logits.float(), shift[keep])
        return DecoderOutput(scores=scores, lm_loss=lm_loss, lm_tokens=n_tokens)

    # ----------------------------------------------------------------------------------- inference
    @property
    def max_length(self) -> int:
        """Most tokens a scored prompt can have (template, BOS, truncated query and document)."""
        cfg = self.student_config
        return 1 + sum(map(len, self._parts)) + cfg.max_query_tokens + cfg.max_doc_tokens + 2

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def _autocast(self):
        """bf16 autocast where `pick_dtype` picks bf16 for the student's device (a no-op when the weights
        already are bf16)."""
        if pick_dtype(self.device, "auto") == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def score(
        self, pairs: Iterable[tuple[str, str]], batch_size: int = 16, show_progress: bool = False
    ) -> list[float]:
        """Relevance score of each (query, document) pair, from the head; no generation."""
        pairs = list(pairs)
        if not pairs:
            return []
        was_training = self.training
        self.eval()
        prompts_len = [len(q) + len(d) for q, d in pairs]
        # longest first: batches of similar lengths pad less, and a memory problem shows up at once
        order = sorted(range(len(pairs)), key=lambda i: -prompts_len[i])
        out = [0.0] * len(pairs)
        bar = progress(total=len(pairs), desc="decoder scoring", unit="pair", disable=not show_progress)
        try:
            for chunk in batched(order, batch_size):
                batch = self.encode([pairs[i][0] for i in chunk], [pairs[i][1] for i in chunk])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                with self._autocast():
                    scores = self(**batch).scores
                for i, s in zip(chunk, scores.float().tolist(), strict=True):
                    out[i] = s
                bar.update(len(chunk))
        finally:
            bar.close()
            self.train(was_training)
        return out

    @torch.inference_mode()
    def _generate(self, prompts: list[list[int]], max_new_tokens: int, batch_size: int) -> list[str]:
        """Greedy continuation of each prompt (token ids), as stripped text."""
        was_training = self.training
        self.eval()
        pad = self.tokenizer.pad_token_id
        texts: list[str] = []
        try:
            for chunk in batched(prompts, batch_size):
                width = max(map(len, chunk))
                # generation wants left padding; transformers derives positions from the mask
                ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=self.device)
                mask = torch.tensor(
                    [[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=self.device
                )
                with self._autocast():
                    gen = self.backbone.generate(
                        input_ids=ids,
                        attention_mask=mask,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        pad_token_id=pad,
                        use_cache=True,
                        eos_token_id=self.tokenizer.eos_token_id,
                    )
                texts += [
                    t.strip() for t in self.tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)
                ]
        finally:
            self.train(was_training)
        return texts

    def explain(
        self, query: str, documents: str | Sequence[str], max_new_tokens: int = 64, batch_size: int = 8
    ) -> list[str]:
        """The student's reasoning on how each document relates to the query (greedy decoding); trained on
        explicit reasoning it ends with a verdict, "Relevance: <grade>" (see `parse_explanation`)."""
        docs = [documents] if isinstance(documents, str) else list(documents)
        return self.explain_pairs([(query, d) for d in docs], max_new_tokens, batch_size)

    def explain_pairs(
        self, pairs: Sequence[tuple[str, str]], max_new_tokens: int = 64, batch_size: int = 8
    ) -> list[str]:
        """`explain` for (query, document) pairs of any queries, batched."""
        if not pairs:
            return []
        prompts = self.encode_prompts([q for q, _ in pairs], [d for _, d in pairs])
        return self._generate(prompts, max_new_tokens, batch_size)

    def compare(
        self, query: str, document_a: str, document_b: str, max_new_tokens: int = 64
    ) -> ComparisonText:
        """Which of two documents the student says is more relevant, and why (generated, greedy)."""
        return self.compare_many([(query, document_a, document_b)], max_new_tokens)[0]

    def compare_many(
        self, triples: Sequence[tuple[str, str, str]], max_new_tokens: int = 64, batch_size: int = 8
    ) -> list[ComparisonText]:
        """`compare` for many (query, document A, document B), batched."""
        if not triples:
            return []
        qs, da, db = (list(c) for c in zip(*triples, strict=True))
        texts = self._generate(self.encode_comparison_prompts(qs, da, db), max_new_tokens, batch_size)
        return [ComparisonText(*parse_comparison(t), text=t) for t in texts]

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameter count, with the signature of `PreTrainedModel.num_parameters` (the Trainer calls it)."""
        skip = set()
        if exclude_embeddings:
            skip = {id(p) for p in self.backbone.get_base_model().get_input_embeddings().parameters()}
        return sum(
            p.numel()
            for p in self.parameters()
            if id(p) not in skip and (p.requires_grad or not only_trainable)
        )


@dataclass
class ComparisonText:
    """A generated comparison: `better` is "A", "B", or None when the text names neither."""

    better: str | None
    reason: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"better": self.better, "reason": self.reason, "text": self.text}


def comparison_target(better: str, reason: str) -> str:
    """The text a student learns to write for a comparison (`parse_comparison` reads it back)."""
    return f"{better}. {' '.join(reason.split())}"


def parse_comparison(text: str) -> tuple[str | None, str]:
    """("A" or "B", the reason) from a comparison's text; (None, text) when it does not start with one."""
    m = _COMPARISON.match(text or "")
    if not m:
        return None, (text or "").strip()
    return m.group(1), m.group(2).strip()


def parse_explanation(text: str) -> tuple[str, float | None]:
    """(reasoning, relevance) from an explicit explanation "<reasoning> Relevance: <value>"; the
    relevance is None when the verdict is missing or there is no reasoning before it."""
    m = _VERDICT.search(text or "")
    if not m or not text[: m.start()].strip():
        return (text or "").strip(), None
    return text[: m.start()].strip(), float(m.group(1))


def read_student_config(path: str | Path) -> dict:
    """rankdistill.json of a saved decoder student, checked."""
    meta = read_metadata(path)
    if not meta:
        raise RankdistillError(f"{path} is not a saved rankdistill student: {METADATA_FILE} is missing")
    if meta.get("student_type") != STUDENT_TYPE:
        raise RankdistillError(
            f"{Path(path) / METADATA_FILE}: student_type is {meta.get('student_type')!r}, expected {STUDENT_TYPE!r}"
        )
    return meta


STUDENT_TYPES.register(STUDENT_TYPE, DecoderStudent.load, create=DecoderStudent.from_backbone)
