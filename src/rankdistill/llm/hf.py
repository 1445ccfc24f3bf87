"""Hugging Face transformers backend: local causal LM or seq2seq (T5-style) folders, and GGUF files
through transformers' GGUF loader (dequantised on load; needs the `gguf` package).

Inputs are sorted by length and batched under a token budget, so padding stays small. Causal models are
left-padded with explicit position ids, so every sequence ends at the last column and only the last K
positions are projected onto the vocabulary (`logits_to_keep`): Gemma 3's 262k-token vocabulary would
otherwise cost more than the transformer itself.
"""

from __future__ import annotations

import inspect
import logging
import threading
from pathlib import Path
from typing import Any, Literal

from rankdistill.errors import RankdistillError, require
from rankdistill.fingerprint import file_fingerprint, folder_fingerprint
from rankdistill.hardware import pick_dtype
from rankdistill.llm._common import (
    candidate_token_ids,
    cut_at_stop,
    is_messages,
    logsumexp,
    looks_instruct,
    read_template,
    render_turns,
    resolve_chat,
    split_continuation,
)
from rankdistill.llm.base import LLM, LLM_BACKENDS, ContinuationScore, Generation
from rankdistill.llm.gguf import gguf_as_folder
from rankdistill.models import resolve_model
from rankdistill.utils import stable_hash

logger = logging.getLogger(__name__)


class HFLLM(LLM):
    """A transformers model run in-process.

    Args:
        model: model folder, a .gguf file, an alias known to `resolve_model`, or a hub name (downloaded
            only when the hub is reachable and HF_HUB_OFFLINE is unset).
        device: "cpu", "cuda", "cuda:1", ... (default: cuda when available).
        dtype: "auto" (bf16 on GPUs and on CPUs with native bf16, else fp32), "bf16", "fp16", "fp32".
        batch_size: most sequences per forward pass.
        max_batch_tokens: most (padded) tokens per forward pass; long inputs get smaller batches.
        n_threads: torch CPU threads (default: torch's own choice).
        max_length: the context window reported as `n_ctx` (default: the model's position limit).
        chat: put every prompt in the tokenizer's chat template as a user message (causal models):
            "auto" (when there is a template and the model looks instruction-tuned by its names, or a
            template was given), true, false. The template's hash is then part of `identity()`.
        chat_template: a Jinja chat template (text, or a file) instead of the tokenizer's.
    """

    backend = "hf"
    model_hint = "a model folder, GGUF file or hub name"
    spec_hint = "hf:<folder or hub name>"

    @classmethod
    def claims(cls, spec: str) -> bool:
        return Path(resolve_model(spec)).is_dir()

    def __init__(
        self,
        model: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = "auto",
        batch_size: int = 16,
        max_batch_tokens: int = 8192,
        n_threads: int | None = None,
        attn_implementation: str | None = "sdpa",
        max_length: int | None = None,
        chat: bool | Literal["auto"] = "auto",
        chat_template: str | None = None,
    ):
        torch = require("torch", "llm", "The transformers backend")
        transformers = require("transformers", "llm", "The transformers backend")
        self._torch = torch
        if n_threads:
            torch.set_num_threads(n_threads)
        source = resolve_model(model)
        path = Path(source)
        if path.is_file() and path.suffix.lower() != ".gguf":
            raise RankdistillError(f"{path} is a file but not a .gguf; pass a model folder or a GGUF file")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = pick_dtype(self.device, dtype)
        load_from = str(gguf_as_folder(path, self.dtype)) if path.is_file() else source
        self.batch_size = max(1, batch_size)
        self.max_batch_tokens = max_batch_tokens
        try:
            config = transformers.AutoConfig.from_pretrained(load_from)
        except OSError as exc:
            raise RankdistillError(f"cannot load a transformers model from {source!r}: {exc}") from exc
        self.is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        cls = transformers.AutoModelForSeq2SeqLM if self.is_seq2seq else transformers.AutoModelForCausalLM
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = cls.from_pretrained(load_from, dtype=self.dtype, **extra).to(self.device).eval()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(load_from)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.pad_id = int(self.tokenizer.pad_token_id)
        self._prefix, self._suffix = self._special_tokens_around()
        self._keep_arg = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        limits = [getattr(config, a, None) for a in ("max_position_embeddings", "n_positions")]
        limits.append(getattr(self.tokenizer, "model_max_length", None))
        #: context window teachers budget prompts against (T5's relative positions have no hard limit)
        self.n_ctx = max_length or min([int(x) for x in limits if x and int(x) < 10**7] or [512])
        self._source = source
        if path.is_file():
            self._fingerprint = file_fingerprint(path)
        elif path.is_dir():
            self._fingerprint = folder_fingerprint(path)
        else:
            self._fingerprint = getattr(config, "_commit_hash", None) or ""
        self._lock = threading.Lock()
        self._warned_schema = False
        given = read_template(chat_template)
        template = given or getattr(self.tokenizer, "chat_template", None) or None
        if isinstance(template, dict):  # several named templates: the default one
            template = template.get("default")
        #: where the chat template comes from ("given", "tokenizer"), None without one
        self.chat_template_source = ("given" if given else "tokenizer") if template else None
        #: whether the model looks instruction-tuned by its names (see `chat`)
        self.instruct = looks_instruct([Path(source).name, getattr(config, "_name_or_path", None)])
        where = Path(source).name
        if self.is_seq2seq and chat is True:
            raise RankdistillError(f"chat=true, but {where} is a seq2seq model: it has no chat turns")
        #: whether prompts go through the chat template
        self.chat = not self.is_seq2seq and resolve_chat(chat, template, self.instruct, bool(given), where)
        self.chat_template = template
        self._chat_ids = self._chat_parts() if self.chat else None

    # ------------------------------------------------------------------ tokens
    def _special_tokens_around(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer adds before and after a text (BOS for Gemma/Llama, EOS for T5)."""
        with_sp = self.tokenizer("x").input_ids
        bare = self.tokenizer("x", add_special_tokens=False).input_ids
        for k in range(len(with_sp) - len(bare) + 1):
            if with_sp[k : k + len(bare)] == bare:
                return with_sp[:k], with_sp[k + len(bare) :]
        return [], []

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        """Causal: the prompt as the model sees it (BOS included). Seq2seq: the encoder input."""
        ids = self._encode(text)
        if not add_bos:
            return ids
        return self._prefix + ids + (self._suffix if self.is_seq2seq else [])

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def _render_template(self, messages: list[dict[str, str]]) -> str:
        """`messages` through the chat template (the tokenizer's `apply_chat_template`), the model's turn
        opened."""
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    def _pieces_ids(self, messages: list) -> list[list[int]]:
        """Each piece of `rankdistill.llm._common.render_turns` as tokens: the template's text with its
        special tokens parsed (BOS first unless the template writes its own), a message's content as text
        (special-token names in it stay text)."""
        where = Path(self._source).name
        if self.is_seq2seq:
            raise RankdistillError(f"{where} is a seq2seq model: it has no chat turns; send one text")
        if not self.chat_template:
            raise RankdistillError(
                f"{where} has no chat template (the tokenizer's chat_template): chat messages need one; "
                "pass chat_template=<Jinja file>, or send the prompt as one text"
            )
        bos = self.tokenizer.bos_token
        out: list[list[int]] = []
        for k, (text, template) in enumerate(render_turns(self._render_template, messages, where)):
            ids = (self._encode(text) if template else self._encode_text(text)) if text else []
            if k == 0 and not (bos and text.startswith(bos)):
                ids = self._prefix + ids
            out.append(ids)
        return out

    def _chat_parts(self) -> tuple[list[int], list[int]]:
        """The token ids of the chat template before and after a user message."""
        before, _, after = self._pieces_ids([{"role": "user", "content": "x"}])
        return before, after

    def _encode_text(self, text: str) -> list[int]:
        """`text` as plain text: special-token names in it stay text (a document cannot open a turn)."""
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids

    def prompt_ids(self, prompt: str | list) -> list[int]:
        """The tokens the model reads for a prompt (`tokenize`), inside the chat template when `chat`
        (the template's special tokens parsed, the prompt's own text never); chat messages (a list of
        role/content dicts) always through the template, a last assistant message continued."""
        if is_messages(prompt):
            return [t for piece in self._pieces_ids(prompt) for t in piece]
        if self._chat_ids is None:
            return self.tokenize(prompt)
        pre, post = self._chat_ids
        return pre + self._encode_text(prompt) + post

    def _input_ids(self, prompt: str | list) -> list[int]:
        """Causal: `prompt_ids`. Seq2seq: the encoder input (chat messages refused: no turns there)."""
        if not self.is_seq2seq:
            return self.prompt_ids(prompt)
        if is_messages(prompt):
            self._pieces_ids(prompt)  # raises: a seq2seq model has no chat turns
        return self.tokenize(prompt)

    def count_prompt_tokens(self, prompt: str | list) -> int:
        return len(self.prompt_ids(prompt)) if is_messages(prompt) else self.count_tokens(prompt)

    def _split(self, prompt: str | list, continuation: str) -> tuple[list[int], int]:
        if self._chat_ids is None and not is_messages(prompt):
            return split_continuation(self.tokenize, prompt, continuation)
        ids = self.prompt_ids(prompt)
        return ids + (self._encode_text(continuation) if continuation else []), len(ids)

    def identity(self) -> dict[str, Any]:
        out = {
            "backend": self.backend,
            "model": Path(self._source).name,
            "fingerprint": self._fingerprint,
            "dtype": str(self.dtype).replace("torch.", ""),
            "architecture": type(self.model).__name__,
        }
        if self.chat:
            out["chat_template"] = stable_hash(self.chat_template, 16)
        return out

    def candidate_token_ids(self, candidates: list[str]) -> list[int]:
        return [ids[0] for ids in candidate_token_ids(self._encode, candidates)]

    # ------------------------------------------------------------------ batching
    def _batches(self, lengths: list[int]):
        """Index lists, longest first, each within batch_size and max_batch_tokens (padded)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batch: list[int] = []
        for i in order:
            width = lengths[batch[0]] if batch else lengths[i]
            if batch and (len(batch) >= self.batch_size or width * (len(batch) + 1) > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _left_pad(self, seqs: list[list[int]]):
        torch = self._torch
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, T - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[b, T - len(s) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    def _right_pad(self, seqs: list[list[int]], value: int):
        torch = self._torch
        T = max(1, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), T), value, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for b, s in enumerate(seqs):
            if s:
                ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
                mask[b, : len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _causal_last_logits(self, seqs: list[list[int]], keep: int):
        """Logits of the last `keep` positions of left-padded sequences: [B, keep, V] (float32)."""
        ids, mask, pos = self._left_pad(seqs)
        kw = {"logits_to_keep": keep} if self._keep_arg else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **kw)
        return out.logits[:, -keep:, :].float()

    def _decoder_start(self) -> int:
        start = self.model.config.decoder_start_token_id
        if start is None:
            start = self.pad_id
        return int(start)

    # ------------------------------------------------------------------ LLM interface
    def score_continuations(self, pairs: list[tuple[str, str]]) -> list[ContinuationScore]:
        torch = self._torch
        results: list[ContinuationScore | None] = [None] * len(pairs)
        if self.is_seq2seq:
            enc = [self.tokenize(p) for p, _ in pairs]
            dec = [self._encode(c) for _, c in pairs]
            lengths = [len(e) + len(d) for e, d in zip(enc, dec, strict=True)]
        else:
            split = [self._split(p, c) for p, c in pairs]
            lengths = [len(ids) for ids, _ in split]
        with self._lock, torch.inference_mode():
            for idx in self._batches(lengths):
                if self.is_seq2seq:
                    e_ids, e_mask = self._right_pad([enc[i] for i in idx], self.pad_id)
                    targets = [dec[i] for i in idx]
                    d_in, d_mask = self._right_pad(
                        [[self._decoder_start()] + t[:-1] for t in targets], self.pad_id
                    )
                    logits = self.model(
                        input_ids=e_ids,
                        attention_mask=e_mask,
                        decoder_input_ids=d_in,
                        decoder_attention_mask=d_mask,
                    ).logits.float()
                    lse = torch.logsumexp(logits, dim=-1)
                    for b, i in enumerate(idx):
                        t = targets[b]
                        if not t:
                            results[i] = ContinuationScore(0.0, 0, [])
                            continue
                        tt = torch.tensor(t, device=logits.device)
                        lp = (logits[b, : len(t)].gather(-1, tt[:, None])[:, 0] - lse[b, : len(t)]).tolist()
                        results[i] = ContinuationScore(float(sum(lp)), len(lp), lp)
                    continue
                seqs = [split[i][0] for i in idx]
                starts = [split[i][1] for i in idx]
                keep = max(max(len(s) - st + 1 for s, st in zip(seqs, starts, strict=True)), 1)
                logits = self._causal_last_logits(seqs, keep)  # position T-keep+j predicts token T-keep+j+1
                lse = torch.logsumexp(logits, dim=-1)
                for b, i in enumerate(idx):
                    s, st = seqs[b], starts[b]
                    n = len(s) - st
                    if n <= 0:
                        results[i] = ContinuationScore(0.0, 0, [])
                        continue
                    # the last n+1 positions; the final one predicts past the end and is dropped
                    rows = logits[b, keep - n - 1 : keep - 1]
                    tt = torch.tensor(s[st:], device=logits.device)
                    lp = (rows.gather(-1, tt[:, None])[:, 0] - lse[b, keep - n - 1 : keep - 1]).tolist()
                    results[i] = ContinuationScore(float(sum(lp)), len(lp), lp)
        return results  # type: ignore[return-value]

    def next_token_logits(self, prompts: list[str], candidates: list) -> list[list[float]]:
        """Candidates: strings (their first token) or groups of spellings (see `LLM.next_token_logits`)."""
        torch = self._torch
        groups = candidate_token_ids(self._encode, candidates)
        flat = [i for g in groups for i in g]
        cand = torch.tensor(flat)
        enc = [self._input_ids(p) for p in prompts]
        out: list[list[float] | None] = [None] * len(prompts)
        with self._lock, torch.inference_mode():
            for idx in self._batches([len(e) for e in enc]):
                seqs = [enc[i] for i in idx]
                if self.is_seq2seq:
                    e_ids, e_mask = self._right_pad(seqs, self.pad_id)
                    start = torch.full(
                        (len(idx), 1), self._decoder_start(), dtype=torch.long, device=self.device
                    )
                    logits = self.model(
                        input_ids=e_ids, attention_mask=e_mask, decoder_input_ids=start
                    ).logits[:, 0]
                else:
                    logits = self._causal_last_logits(seqs, 1)[:, 0]
                rows = logits.float()[:, cand.to(logits.device)].tolist()
                for b, i in enumerate(idx):
                    out[i] = _grouped(rows[b], groups)
        return out  # type: ignore[return-value]

    def generate(
        self,
        prompts: list[str],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
    ) -> list[Generation]:
        """Batched `model.generate`; sampling is seeded once per call (batches are formed the same way for
        the same prompts, so a call repeats exactly). `json_schema` is NOT enforced by this backend (use
        llama.cpp or a server for constrained output); `Generation.logprob` is log P(text | prompt) of the
        returned, stop-trimmed text."""
        torch = self._torch
        if json_schema is not None and not self._warned_schema:
            logger.warning(
                "the transformers backend does not constrain output to a JSON schema; parse leniently"
            )
            self._warned_schema = True
        enc = [self._input_ids(p) for p in prompts]
        texts: list[str] = [""] * len(prompts)
        n_new: list[int] = [0] * len(prompts)
        finish: list[str] = ["length"] * len(prompts)
        sample = temperature > 0
        gen_kw: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "do_sample": sample,
            "pad_token_id": self.pad_id,
            "num_beams": 1,
        }
        if sample:
            gen_kw.update(temperature=temperature, top_p=top_p, top_k=0)
        else:  # greedy: neutralise sampling defaults a model's generation_config may carry
            gen_kw.update(temperature=None, top_p=None, top_k=None)
        if stop:
            gen_kw.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        eos = set(self._eos_ids())
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            for idx in self._batches([len(e) + max_tokens for e in enc]):
                seqs = [enc[i] for i in idx]
                if self.is_seq2seq:
                    ids, mask = self._right_pad(seqs, self.pad_id)
                    out = self.model.generate(input_ids=ids, attention_mask=mask, **gen_kw)
                    new = out[:, 1:]  # drop the decoder start token
                else:
                    ids, mask, _ = self._left_pad(seqs)
                    out = self.model.generate(input_ids=ids, attention_mask=mask, **gen_kw)
                    new = out[:, ids.shape[1] :]
                for b, i in enumerate(idx):
                    toks = new[b].tolist()
                    cut = next((k for k, t in enumerate(toks) if t in eos), None)
                    if cut is not None:
                        toks, finish[i] = toks[:cut], "stop"
                    text = self.tokenizer.decode(toks, skip_special_tokens=True)
                    text, stopped = cut_at_stop(text, stop)
                    if stopped:
                        finish[i] = "stop"
                    texts[i], n_new[i] = text, len(toks)
        scores = self.score_continuations([(p, t) for p, t in zip(prompts, texts, strict=True)])
        return [
            Generation(text=t, logprob=s.logprob, n_tokens=n, finish_reason=f, prompt_tokens=len(e))
            for t, s, n, f, e in zip(texts, scores, n_new, finish, enc, strict=True)
        ]

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return [int(i) for i in ids if i is not None] + [self.pad_id]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def _grouped(values: list[float], groups: list[list[int]]) -> list[float]:
    """Per candidate: its one logit, or the log-sum-exp of its spellings' (values are `groups` flattened)."""
    out, k = [], 0
    for g in groups:
        part = values[k : k + len(g)]
        out.append(part[0] if len(part) == 1 else logsumexp(part))
        k += len(g)
    return out


LLM_BACKENDS.register("hf", HFLLM, aliases=("transformers", "huggingface"))
