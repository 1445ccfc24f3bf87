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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankdistill.errors import RankdistillError, require
from rankdistill.hardware import pick_dtype
from rankdistill.llm.gguf import gguf_as_folder, save_causal_lm
from rankdistill.models import resolve_model
from rankdistill.students.metadata import METADATA_FILE, STUDENT_TYPES, read_metadata, write_metadata
from rankdistill.utils import batched, progress, set_seed

logger = logging.getLogger(__name__)

STUDENT_TYPE = "decoder"
HEAD_NAME = "ranking_head.safetensors"
DEFAULT_PROMPT = "Query: {query}\nDocument: {document}\nRelevant:"
IGNORE_INDEX = -100


@dataclass
class DecoderConfig:
    """Everything needed to rebuild the student's inputs; saved in rankdistill.json."""

    backbone: str = "gemma3-270m"  # alias, HF folder, or .gguf file, as the user gave it
    prompt: str = DEFAULT_PROMPT  # must contain {query} and {document}, in that order
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
        q, d = self.prompt.find("{query}"), self.prompt.find("{document}")
        if q < 0 or d < 0 or d < q:
            raise ValueError(f"prompt must contain {{query}} then {{document}}, got {self.prompt!r}")


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
        self._parts = self._template_parts()

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
    def load(cls, path: str | Path, dtype: str | None = "auto", trainable: bool = False) -> DecoderStudent:
        """Load a saved student. dtype: weights' precision ("auto" = bf16 where the CPU has it, "fp32")."""
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        meta = read_student_config(path)
        config = DecoderConfig(**meta["config"])
        torch_dtype = pick_dtype("cpu", dtype)
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
        student = cls(model, tokenizer, config, head=head)
        if not trainable:
            student.eval()
        return student

    def save(self, path: str | Path, merge: bool = False) -> Path:
        """Write the student folder; `merge=True` stores full merged weights instead of the adapter."""
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
        write_metadata(path, meta)
        return path

    # ------------------------------------------------------------------------------------ encoding
    def _template_parts(self) -> tuple[list[int], list[int], list[int]]:
        """Token ids of the template's three fixed pieces. A trailing space of a piece moves onto the text
        that follows it ("Query: " + "what" -> "Query:" + " what"), which is how the tokenizer would split
        the joined string, instead of a lone space token."""
        before, rest = self.student_config.prompt.split("{query}", 1)
        between, after = rest.split("{document}", 1)
        self._space_before = (" " if before.endswith(" ") else "", " " if between.endswith(" ") else "")
        enc = self.tokenizer([before.rstrip(" "), between.rstrip(" "), after], add_special_tokens=False)[
            "input_ids"
        ]
        return enc[0], enc[1], enc[2]

    def encode_prompts(self, queries: Sequence[str], documents: Sequence[str]) -> list[list[int]]:
        """Token ids of each (query, document) prompt; query and document are truncated separately so the
        template's words (and the last token the head reads) always survive."""
        before, between, after = self._parts
        qs, ds = self._space_before
        q_ids = self.tokenizer([qs + q for q in queries], add_special_tokens=False)["input_ids"]
        d_ids = self.tokenizer([ds + d for d in documents], add_special_tokens=False)["input_ids"]
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        cfg = self.student_config
        return [
            bos + before + q[: cfg.max_query_tokens] + between + d[: cfg.max_doc_tokens] + after
            for q, d in zip(q_ids, d_ids, strict=True)
        ]

    def encode(
        self, queries: Sequence[str], documents: Sequence[str], reasonings: Sequence[str | None] | None = None
    ) -> dict[str, torch.Tensor]:
        """Right-padded batch: input_ids, attention_mask, score_index (last prompt token of each row) and,
        with reasonings, lm_labels (-100 everywhere but the reasoning tokens and the closing EOS)."""
        prompts = self.encode_prompts(queries, documents)
        targets: list[list[int]] = [[] for _ in prompts]
        if reasonings is not None:
            if len(reasonings) != len(prompts):
                raise ValueError(f"got {len(reasonings)} reasonings for {len(prompts)} pairs")
            todo = [i for i, r in enumerate(reasonings) if r and r.strip()]
            if todo:
                enc = self.tokenizer([" " + reasonings[i].strip() for i in todo], add_special_tokens=False)[
                    "input_ids"
                ]
                for i, ids in zip(todo, enc, strict=True):
                    targets[i] = ids[: self.student_config.max_reasoning_tokens] + [
                        self.tokenizer.eos_token_id
                    ]
        width = max(len(p) + len(t) for p, t in zip(prompts, targets, strict=True))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        labels = torch.full((len(prompts), width), IGNORE_INDEX, dtype=torch.long)
        score_index = torch.empty(len(prompts), dtype=torch.long)
        for row, (p, t) in enumerate(zip(prompts, targets, strict=True)):
            n = len(p) + len(t)
            input_ids[row, :n] = torch.tensor(p + t)
            attention[row, :n] = 1
            if t:
                labels[row, len(p) : n] = torch.tensor(t, dtype=torch.long)
            score_index[row] = len(p) - 1
        batch = {"input_ids": input_ids, "attention_mask": attention, "score_index": score_index}
        if reasonings is not None:
            batch["lm_labels"] = labels
        return batch

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
        """bf16 autocast on CPUs with native bf16 (a no-op when the weights already are bf16)."""
        if pick_dtype(self.device.type, "auto") == torch.bfloat16:
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
    def explain(
        self, query: str, documents: str | Sequence[str], max_new_tokens: int = 64, batch_size: int = 8
    ) -> list[str]:
        """The student's reasoning on how each document relates to the query (greedy decoding)."""
        docs = [documents] if isinstance(documents, str) else list(documents)
        was_training = self.training
        self.eval()
        pad = self.tokenizer.pad_token_id
        texts: list[str] = []
        try:
            for chunk in batched(docs, batch_size):
                prompts = self.encode_prompts([query] * len(chunk), chunk)
                width = max(map(len, prompts))
                # generation wants left padding; transformers derives positions from the mask
                ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
                mask = torch.tensor(
                    [[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device
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
