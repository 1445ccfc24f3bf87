"""Helpers every backend shares: the prompt/continuation token split, stop strings, log-probabilities.

Model fingerprints are `rankdistill.fingerprint`'s."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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
#: chat messages: a list of {"role": "system" | "user" | "assistant", "content": text}
Messages = list[dict[str, str]]

#: the roles a message may have
ROLES = ("system", "user", "assistant")


def message_sentinel(i: int) -> str:
    """Stands for message i while a chat template is rendered, so the text around the messages can be
    tokenised with special tokens and the messages themselves without (a document cannot inject
    control tokens)."""
    return f"\ue000rankdistill-message-{i}\ue001"


#: the single-prompt sentinel (message 0)
PROMPT_SENTINEL = message_sentinel(0)


def is_messages(prompt: Any) -> bool:
    """Whether a prompt is chat messages (a list of role/content mappings) rather than a text."""
    return isinstance(prompt, (list, tuple))


def check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Chat messages as plain dicts, each with a known role and a text content; a ValueError naming the
    message otherwise."""
    out: list[dict[str, str]] = []
    if not messages:
        raise ValueError("chat messages: the list is empty")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"chat message {i}: expected a mapping with 'role' and 'content', got {m!r}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ValueError(f"chat message {i}: role {role!r}; expected one of {ROLES}")
        if not isinstance(content, str):
            raise ValueError(f"chat message {i}: content must be text, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


def split_prefill(messages: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, str]], str | None]:
    """The messages before the answer and the answer's given start: a last assistant message is not a
    finished turn but the beginning of the model's answer (a prefill), which the model continues."""
    msgs = check_messages(messages)
    if msgs[-1]["role"] == "assistant":
        if len(msgs) == 1:
            raise ValueError("chat messages: an assistant message alone is no conversation")
        return msgs[:-1], msgs[-1]["content"]
    return msgs, None


def render_turns(
    render: Callable[[list[dict[str, str]]], str], messages: Sequence[Mapping[str, Any]], where: str
) -> list[tuple[str, bool]]:
    """What a model reads for chat `messages`, as (text, is_template) pieces in order: the chat
    template's own text (its special tokens to be parsed) and each message's content (plain text, never
    parsed). `render` renders messages with the template, the generation prompt added (the model's turn
    opened). A last assistant message is the start of the answer (`split_prefill`): the template is
    rendered without it and its content follows the opened turn as text.

    The one place messages become a prompt: the local backends tokenise the pieces, each with its own
    tokenizer; single prompts are one user message."""
    from rankdistill.errors import RankdistillError

    msgs, prefill = split_prefill(messages)
    try:
        rendered = render([{"role": m["role"], "content": message_sentinel(i)} for i, m in enumerate(msgs)])
    except RankdistillError:
        raise
    except Exception as exc:  # a template is user code: any error, said in one line
        roles = "/".join(dict.fromkeys(m["role"] for m in msgs))
        raise RankdistillError(
            f"the chat template of {where} failed on {roles} messages: {exc}; use chat=false"
        ) from None
    pieces: list[tuple[str, bool]] = []
    rest = rendered
    for i, m in enumerate(msgs):
        sentinel = message_sentinel(i)
        if rest.count(sentinel) != 1 or rendered.count(sentinel) != 1:
            what = "the user's message" if len(msgs) == 1 else f"message {i} ({m['role']})"
            raise RankdistillError(
                f"the chat template of {where} does not show {what} once as it is, in order; "
                + ("use chat=false" if len(msgs) == 1 else "send the prompt as one text (messages=false)")
            )
        before, _, rest = rest.partition(sentinel)
        pieces += [(before, True), (m["content"], False)]
    pieces.append((rest, True))
    if prefill:
        pieces.append((prefill, False))
    return pieces


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
