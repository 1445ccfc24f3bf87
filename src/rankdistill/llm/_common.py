"""Helpers every backend shares: the prompt/continuation token split, stop strings, log-probabilities.

Model fingerprints are `rankdistill.fingerprint`'s."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def split_continuation(
    tokenize: Callable[[str], list[int]], prompt: str, continuation: str
) -> tuple[list[int], int]:
    """Token ids of prompt + continuation (tokenised as one string, as a server would) and the index of
    the first token that belongs to the continuation.

    When the tokeniser merges the prompt's last characters with the continuation's first ones, the merged
    token counts as continuation (every token that overlaps the continuation is scored), the same rule the
    HTTP backend applies through `text_offset`.
    """
    ctx = tokenize(prompt)
    if not continuation:
        return ctx, len(ctx)
    full = tokenize(prompt + continuation)
    start = common_prefix_len(ctx, full)
    if start == 0:
        raise ValueError(
            "cannot score a continuation with no context: the prompt is empty and the tokenizer adds no BOS token"
        )
    return full, start


def logprob_of(row: np.ndarray, token: int) -> float:
    """log softmax(row)[token], in float64 so 262k-entry vocabularies sum without loss."""
    row = row.astype(np.float64, copy=False)
    m = float(row.max())
    return float(row[token] - m - math.log(float(np.exp(row - m).sum())))


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """Text up to (not including) the earliest stop string, and whether one was found."""
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


# ---------------------------------------------------------------------------------------------- candidates
def logsumexp(values: Sequence[float]) -> float:
    """log(sum(exp(v))) in float64: the log-probability mass of several tokens."""
    m = max(values)
    return float(m + math.log(sum(math.exp(v - m) for v in values)))


def candidate_token_ids(encode: Callable[[str], list[int]], candidates: Sequence) -> list[list[int]]:
    """The token ids whose logits `next_token_logits` reads for each candidate: a string is its first
    token (as it always was); a group of spellings (a tuple or list of strings, whose probability mass is
    summed) is every spelling that is exactly one token of the vocabulary, each id once."""
    out: list[list[int]] = []
    for c in candidates:
        if isinstance(c, str):
            toks = encode(c)
            if not toks:
                raise ValueError(f"candidate {c!r} has no tokens")
            out.append([toks[0]])
            continue
        ids = list(dict.fromkeys(t[0] for t in (encode(s) for s in c) if len(t) == 1))
        if not ids:
            raise ValueError(f"no spelling of {list(c)!r} is a single token of this model's vocabulary")
        out.append(ids)
    return out


def candidate_values(row: np.ndarray, ids: Sequence[Sequence[int]]) -> list[float]:
    """Each candidate's logit (one id) or the log-sum-exp of its spellings' logits (several ids)."""
    return [float(row[c[0]]) if len(c) == 1 else logsumexp([float(row[i]) for i in c]) for c in ids]


# ---------------------------------------------------------------------------------------------- chat
#: stands for the prompt while a chat template is rendered, so the text around it can be tokenised with
#: special tokens and the prompt itself without (a document cannot inject control tokens)
PROMPT_SENTINEL = "\ue000rankdistill-prompt\ue001"

_INSTRUCT = re.compile(r"(?:^|[^a-z0-9])(?:it|instruct|instruction|chat|sft|rlhf|dpo)(?:[^a-z0-9]|$)")


def looks_instruct(names: Sequence[str | None]) -> bool:
    """Whether a model is instruction-tuned, by its names (GGUF general.name / general.finetune /
    general.basename, the file or folder name, config's _name_or_path): one of them has a word "it",
    "instruct", "chat", "sft", "rlhf" or "dpo" ("gemma-3-270m-it", "Qwen2.5-7B-Instruct",
    "TinyLlama-1.1B-Chat"). Base models often carry a chat template too (Qwen2.5 base does), so the
    template alone does not say it."""
    return any(_INSTRUCT.search(str(n).lower()) for n in names if n)


def read_template(chat_template: str | None) -> str | None:
    """A `chat_template` option: Jinja text, or the path of a file holding it."""
    if not chat_template:
        return None
    if "{" not in chat_template:
        from pathlib import Path

        path = Path(chat_template).expanduser()
        if not path.is_file():
            raise ValueError(f"chat_template {chat_template!r} is neither Jinja text nor a file")
        return path.read_text(encoding="utf-8")
    return chat_template


def resolve_chat(chat: bool | str, template: str | None, instruct: bool, given: bool, where: str) -> bool:
    """Whether prompts go through the chat template. ``chat="auto"``: when there is a template and the
    model looks instruction-tuned (`looks_instruct`) or the template was given explicitly; ``True``: always
    (an error naming the model when it has no template); ``False``: never."""
    from rankdistill.errors import RankdistillError

    if chat == "auto":
        return bool(template) and (instruct or given)
    if chat is True or chat == "true":
        if not template:
            raise RankdistillError(
                f"chat=true, but {where} has no chat template (GGUF tokenizer.chat_template, or the "
                "tokenizer's chat_template); pass chat_template=<Jinja file> or use chat=false"
            )
        return True
    if chat is False or chat == "false":
        return False
    raise ValueError(f"chat must be 'auto', true or false, not {chat!r}")


def split_rendered(rendered: str, where: str) -> tuple[str, str]:
    """The template's text before and after the prompt (rendered with `PROMPT_SENTINEL` as the message)."""
    from rankdistill.errors import RankdistillError

    if rendered.count(PROMPT_SENTINEL) != 1:
        raise RankdistillError(
            f"the chat template of {where} does not show the user's message once as it is; use chat=false"
        )
    before, _, after = rendered.partition(PROMPT_SENTINEL)
    return before, after
