"""llama.cpp backend (llama-cpp-python) for GGUF files.

Scoring decodes only what it must: the KV cache keeps the longest common token prefix with the previous
call (prompts that share a query or an instruction are evaluated once), and logits are requested only for
the positions that are scored, never for the whole vocabulary at every prompt token (`logits_all` would
cost n_ctx x 262k floats for Gemma 3).
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rankdistill.errors import RankdistillError, require
from rankdistill.fingerprint import file_fingerprint
from rankdistill.hardware import usable_cpus
from rankdistill.llm._common import (
    candidate_token_ids,
    candidate_values,
    common_prefix_len,
    cut_at_stop,
    is_messages,
    logprob_of,
    looks_instruct,
    read_template,
    render_turns,
    resolve_chat,
    split_continuation,
)
from rankdistill.llm.base import LLM, LLM_BACKENDS, ContinuationScore, Generation
from rankdistill.llm.llamacpp_cpu import load_cpu_backend
from rankdistill.models import resolve_model
from rankdistill.registry import parameters_of
from rankdistill.utils import stable_hash

logger = logging.getLogger(__name__)


class LlamaCppLLM(LLM):
    """A GGUF model run in-process by llama.cpp.

    Args:
        model: path of a .gguf file, or an alias known to `rankdistill.models.resolve_model`.
        n_ctx: context window in tokens; prompt + continuation must fit.
        n_threads: CPU threads for token-by-token generation (default: half the usable CPUs, i.e. the
            physical cores on SMT machines; llama.cpp threads spin, so oversubscribing a busy CPU is far
            slower than using fewer threads).
        n_threads_batch: CPU threads for prompt processing and scoring (default: n_threads if given,
            else all usable CPUs).
        n_batch: tokens per decode call.
        n_gpu_layers: layers offloaded to a GPU when llama.cpp was built with one (-1: all).
        parse_special: tokenise special-token text such as ``<start_of_turn>`` as special tokens; off by
            default so a document that happens to contain such text cannot inject control tokens.
        seed: default sampling seed (each `generate` call passes its own).
        prefix_cache: reuse the KV cache of the common token prefix with the previous call. Much faster
            for prompts that share a beginning; results then differ from a cold evaluation by float
            noise (~1e-2 in log-probabilities, since llama.cpp picks other kernels for other batch
            sizes). Turn off for bit-exact repeatability regardless of call order.
        chat: put every prompt in the chat template as a user message and read/generate the model's
            answer after it: "auto" (when the model has a template and looks instruction-tuned by its
            names, `rankdistill.llm._common.looks_instruct`, or a template was given), true, false. The
            template's hash is then part of `identity()`.
        chat_template: a Jinja chat template (text, or a file) instead of the GGUF's
            ``tokenizer.chat_template``; rendered with llama-cpp-python's Jinja2ChatFormatter.
    """

    backend = "llamacpp"
    supports_json_schema = True  # the schema becomes a llama.cpp grammar
    model_hint = "a GGUF path or alias"
    spec_hint = "llamacpp:<gguf or alias>"

    @classmethod
    def claims(cls, spec: str) -> bool:
        return Path(resolve_model(spec)).suffix.lower() == ".gguf"

    @classmethod
    def spec_parameters(cls) -> tuple[dict[str, inspect.Parameter], bool]:
        """The named parameters and those of `llama_cpp.Llama` (where ``**llama_kwargs`` go: flash_attn,
        n_ubatch, type_k, ...), except the two this class sets itself. Without llama-cpp-python any key
        passes, so loading says what to install."""
        params, _ = parameters_of(cls)
        try:
            import llama_cpp
        except ImportError:
            return params, True
        llama, _ = parameters_of(llama_cpp.Llama, skip=("model_path", "logits_all"))
        return {**llama, **params}, False

    def __init__(
        self,
        model: str | Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        parse_special: bool = False,
        seed: int = 0,
        prefix_cache: bool = True,
        chat: bool | Literal["auto"] = "auto",
        chat_template: str | None = None,
        verbose: bool = False,
        **llama_kwargs: Any,
    ):
        llama_cpp = require("llama_cpp", "llm", "The llama.cpp backend")
        self.cpu_backend = load_cpu_backend()  # the kernels of this CPU, picked now (see llamacpp_cpu)
        path = Path(resolve_model(model))
        if not path.is_file():
            raise RankdistillError(f"llama.cpp backend needs a GGUF file; {path} is not a file")
        cpus = usable_cpus()
        threads = n_threads or max(1, cpus // 2)
        threads_batch = n_threads_batch or n_threads or cpus
        self.path = path
        self.n_threads = threads
        self.parse_special = parse_special
        self.prefix_cache = prefix_cache
        self._llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=threads,
            n_threads_batch=threads_batch,
            n_gpu_layers=n_gpu_layers,
            logits_all=False,
            seed=seed,
            verbose=verbose,
            **llama_kwargs,
        )
        self._llama_cpp = llama_cpp
        # free the native context before interpreter teardown (Llama.__del__ fails once modules are gone)
        self._finalizer = weakref.finalize(self, self._llama.close)
        self._lock = threading.RLock()  # one llama context: calls from several threads take turns
        self._fingerprint = file_fingerprint(path)
        self._n_vocab = self._llama.n_vocab()
        meta = self._llama.metadata
        trained = meta.get(f"{meta.get('general.architecture', '')}.context_length")
        #: the context the model was trained for (GGUF metadata), when it says
        self.n_ctx_train = int(trained) if str(trained or "").isdigit() else None
        given = read_template(chat_template)
        template = given or meta.get("tokenizer.chat_template") or None
        #: where the chat template comes from ("given", "gguf"), None without one
        self.chat_template_source = ("given" if given else "gguf") if template else None
        names = [meta.get(k) for k in ("general.name", "general.finetune", "general.basename")]
        #: whether the model looks instruction-tuned by its names (see `chat`)
        self.instruct = looks_instruct([*names, path.name])
        #: whether prompts go through the chat template
        self.chat = resolve_chat(chat, template, self.instruct, bool(given), path.name)
        self.chat_template = template
        self._formatter: Any = None
        self._bos = self._token_text(self._llama.token_bos())
        self._chat_ids: tuple[list[int], list[int]] | None = self._chat_parts() if self.chat else None

    # ------------------------------------------------------------------ identity and tokens
    def identity(self) -> dict[str, Any]:
        out = {
            "backend": self.backend,
            "model": self.path.name,
            "fingerprint": self._fingerprint,
            "quantization": str(self._llama.metadata.get("general.file_type", "")),
        }
        if self.chat:
            out["chat_template"] = stable_hash(self.chat_template, 16)
        return out

    def _render_template(self, messages: list[dict[str, str]]) -> str:
        """`messages` through the chat template (llama-cpp-python's Jinja2ChatFormatter), the model's turn
        opened."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            L = self._llama
            self._formatter = Jinja2ChatFormatter(
                template=self.chat_template, eos_token=self._token_text(L.token_eos()), bos_token=self._bos
            )
        return self._formatter(messages=messages).prompt

    def _token_text(self, token: int) -> str:
        return self._llama.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

    def _pieces_ids(self, pieces: list[tuple[str, bool]]) -> list[list[int]]:
        """Each piece of `render_turns` as tokens: the template's text with its special tokens parsed (BOS
        first unless the template writes its own), a message's content as text."""
        L = self._llama
        out: list[list[int]] = []
        for k, (text, template) in enumerate(pieces):
            if k == 0:
                add_bos = not (self._bos and text.startswith(self._bos))
                out.append(L.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))
            elif not text:
                out.append([])
            elif template:
                out.append(L.tokenize(text.encode("utf-8"), add_bos=False, special=True))
            else:
                out.append(self.tokenize(text, add_bos=False))
        return out

    def _turns(self, messages: list) -> list[tuple[str, bool]]:
        if not self.chat_template:
            raise RankdistillError(
                f"{self.path.name} has no chat template (GGUF tokenizer.chat_template): chat messages need "
                "one; pass chat_template=<Jinja file>, or send the prompt as one text"
            )
        return render_turns(self._render_template, messages, self.path.name)

    def _chat_parts(self) -> tuple[list[int], list[int]]:
        """The token ids of the chat template before and after a user message (special tokens parsed
        there only: the message itself is tokenised as text, so a document cannot inject them)."""
        before, _, after = self._pieces_ids(self._turns([{"role": "user", "content": "x"}]))
        return before, after

    def prompt_ids(self, prompt: str | list) -> list[int]:
        """The tokens the model reads for a prompt: with BOS, inside the chat template when `chat`; chat
        messages (a list of role/content dicts) always through the template, a last assistant message
        continued (`rankdistill.llm._common.render_turns`)."""
        if is_messages(prompt):
            return [t for piece in self._pieces_ids(self._turns(prompt)) for t in piece]
        if self._chat_ids is None:
            return self.tokenize(prompt)
        pre, post = self._chat_ids
        return pre + self.tokenize(prompt, add_bos=False) + post

    def count_prompt_tokens(self, prompt: str | list) -> int:
        return len(self.prompt_ids(prompt)) if is_messages(prompt) else self.count_tokens(prompt)

    def _split(self, prompt: str | list, continuation: str) -> tuple[list[int], int]:
        """Token ids of prompt + continuation and where the continuation starts. In a chat template the
        continuation is the answer after the turn's header, tokenised on its own."""
        if self._chat_ids is None and not is_messages(prompt):
            return split_continuation(self.tokenize, prompt, continuation)
        ids = self.prompt_ids(prompt)
        return ids + (self.tokenize(continuation, add_bos=False) if continuation else []), len(ids)

    @property
    def n_ctx(self) -> int:
        return self._llama.n_ctx()

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=self.parse_special)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text, add_bos=False))

    def _check_fits(self, n: int) -> None:
        if n > self.n_ctx:
            raise ValueError(
                f"{n} tokens do not fit the context window of {self.n_ctx}; shorten the input "
                f"or load the model with a larger n_ctx"
            )

    # ------------------------------------------------------------------ low-level decoding
    def _decode(self, ids: list[int], want: list[int], on_row: Callable[[int, np.ndarray], None]) -> None:
        """Make the KV cache hold `ids`, calling on_row(position, logits) for each position in `want`
        (logits at position p predict token p + 1). Reuses the cached common prefix."""
        L = self._llama
        self._check_fits(len(ids))
        keep = common_prefix_len(L.input_ids[: L.n_tokens].tolist(), ids) if self.prefix_cache else 0
        if want:
            keep = min(keep, min(want))
        keep = min(keep, len(ids) - 1)  # always decode at least one token so the logits are fresh
        if not L._ctx.kv_cache_seq_rm(-1, keep, -1):
            keep = 0
            L.reset()
            L._ctx.kv_cache_seq_rm(-1, 0, -1)
        L.n_tokens = keep
        wanted = set(want)
        batch = L._batch.batch
        pos = keep
        while pos < len(ids):
            chunk = ids[pos : pos + L.n_batch]
            batch.n_tokens = len(chunk)
            for j, tok in enumerate(chunk):
                batch.token[j] = tok
                batch.pos[j] = pos + j
                batch.seq_id[j][0] = 0
                batch.n_seq_id[j] = 1
                batch.logits[j] = (pos + j) in wanted
            L._ctx.decode(L._batch)
            L.input_ids[pos : pos + len(chunk)] = chunk
            L.n_tokens = pos + len(chunk)
            for j in range(len(chunk)):
                if (pos + j) in wanted:
                    ptr = L._ctx.get_logits_ith(j)
                    on_row(pos + j, np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)))
            pos += len(chunk)
        # `Llama.generate` samples straight from the live logits on an exact cache hit; ours may belong
        # to an earlier position, so make it decode again.
        L._requires_eval = True

    def _score_ids(self, ids: list[int], start: int) -> ContinuationScore:
        if start >= len(ids):
            return ContinuationScore(logprob=0.0, n_tokens=0, token_logprobs=[])
        lps: list[float] = []

        def take(p: int, row: np.ndarray) -> None:
            lps.append(logprob_of(row, ids[p + 1]))

        # the last token's logits are not needed: decode up to it (it predicts nothing we score)
        self._decode(ids[:-1], list(range(start - 1, len(ids) - 1)), take)
        return ContinuationScore(logprob=float(sum(lps)), n_tokens=len(lps), token_logprobs=lps)

    # ------------------------------------------------------------------ LLM interface
    def score_continuations(self, pairs: list[tuple[str, str]]) -> list[ContinuationScore]:
        out = []
        with self._lock:
            for prompt, continuation in pairs:
                out.append(self._score_ids(*self._split(prompt, continuation)))
        return out

    def candidate_token_ids(self, candidates: list[str]) -> list[int]:
        """The first token of each candidate string (what `next_token_logits` reads)."""
        return [ids[0] for ids in candidate_token_ids(lambda c: self.tokenize(c, add_bos=False), candidates)]

    def next_token_logits(self, prompts: list[str], candidates: list) -> list[list[float]]:
        """Candidates: strings (their first token) or groups of spellings (see `LLM.next_token_logits`)."""
        cand = candidate_token_ids(lambda c: self.tokenize(c, add_bos=False), candidates)
        out: list[list[float]] = []
        with self._lock:
            for prompt in prompts:
                ids = self.prompt_ids(prompt)
                self._decode(ids, [len(ids) - 1], lambda _p, row: out.append(candidate_values(row, cand)))
        return out

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
        """Prompt i is sampled with seed `seed + i`: a call repeats exactly, and copies of one prompt in a
        call give different samples. `json_schema` becomes a llama.cpp grammar, so the output parses.
        `Generation.logprob` is log P(text | prompt) of the returned (stop-trimmed) text."""
        grammar = None
        if json_schema is not None:
            grammar = self._llama_cpp.LlamaGrammar.from_json_schema(json.dumps(json_schema), verbose=False)
        results = []
        with self._lock:
            for i, prompt in enumerate(prompts):
                prompt_ids = self.prompt_ids(prompt)
                self._check_fits(len(prompt_ids) + 1)
                res = self._llama.create_completion(
                    prompt_ids,
                    max_tokens=max(1, min(max_tokens, self.n_ctx - len(prompt_ids))),
                    temperature=temperature,
                    top_p=top_p,
                    top_k=0,  # plain temperature / nucleus sampling, comparable across backends
                    min_p=0.0,
                    typical_p=1.0,
                    repeat_penalty=1.0,
                    seed=seed + i,
                    stop=list(stop or []),
                    grammar=grammar,
                )
                choice = res["choices"][0]
                text, _ = cut_at_stop(choice["text"], stop)
                score = self._score_ids(*self._split(prompt, text)) if text else None
                results.append(
                    Generation(
                        text=text,
                        logprob=score.logprob if score else 0.0,
                        n_tokens=res["usage"]["completion_tokens"],
                        finish_reason=choice.get("finish_reason") or "stop",
                        prompt_tokens=len(prompt_ids),
                    )
                )
        return results

    def close(self) -> None:
        with self._lock:
            if getattr(self, "_llama", None) is not None:
                self._finalizer()
                self._llama = None


LLM_BACKENDS.register("llamacpp", LlamaCppLLM, aliases=("llama.cpp", "llama_cpp", "gguf"))
