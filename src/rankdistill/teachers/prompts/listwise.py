"""Listwise ranking prompts (RankGPT, Sun et al. 2023; reused by RRADistill's one-pass pipeline).

Passages are numbered [1]..[n] in the order the pre-ranker gave them; the answer is a permutation of those
identifiers. Two variants: a free-text answer ("[2] > [1] > [3]") for backends that cannot constrain their
output, and a JSON answer ({"ranking": [2, 1, 3]}) for backends that take a JSON schema (llama.cpp grammars,
OpenAI `response_format`). The same parser reads both.

Presets (`PRESETS`) send the prompt the way published listwise rankers do, as chat turns or one text:
`RANKGPT` (a user turn per passage, each acknowledged by the assistant) and `RANKZEPHYR` (one user
message with every passage). Letters instead of numbers mark passages for FIRST's single-token ranking.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rankdistill.teachers.prompts import PromptTemplate, register
from rankdistill.utils import stable_hash

LISTWISE = register(
    PromptTemplate(
        name="listwise",
        version="1",
        template=(
            "I will give you {num} passages, each marked with a numerical identifier in brackets. "
            "Rank the passages by how relevant they are to the search query.\n\n"
            "{passages}\n\n"
            "Search query: {query}\n\n"
            "Rank the {num} passages above from most to least relevant to the search query. "
            "Answer only with all {num} identifiers in descending order of relevance, like [2] > [1] > [3], "
            "each identifier once, and nothing else.\n\n"
            "Ranking:"
        ),
    )
)

LISTWISE_JSON = register(
    PromptTemplate(
        name="listwise-json",
        # 2: no example answer in the text (a small model copied "[2, 1, 3]" as its answer)
        version="2",
        template=(
            "I will give you {num} passages, each marked with a numerical identifier in brackets. "
            "Rank the passages by how relevant they are to the search query.\n\n"
            "{passages}\n\n"
            "Search query: {query}\n\n"
            "Rank the {num} passages above from most to least relevant to the search query. "
            'Answer with a JSON object whose "ranking" lists all {num} identifiers as numbers, most relevant '
            "first, each once.\n\n"
            "Answer:"
        ),
    )
)


def render_passages(texts: list[str]) -> str:
    """The numbered passage block: '[1] text' lines, identifiers 1-based in input order."""
    return "\n".join(f"[{i}] {' '.join(t.split())}" for i, t in enumerate(texts, start=1))


def ranking_schema(n: int, min_items: int = 1) -> dict:
    """JSON schema of the listwise answer: at least `min_items` and at most n identifiers from 1..n.
    Duplicates are left to the parser, since grammar engines do not enforce uniqueItems."""
    return {
        "type": "object",
        "properties": {
            "ranking": {
                "type": "array",
                "items": {"type": "integer", "enum": list(range(1, n + 1))},
                "minItems": min(min_items, n),
                "maxItems": n,
            },
        },
        "required": ["ranking"],
    }


# ------------------------------------------------------------------------------------------ identifiers
#: how passages are marked: numbers [1]..[n] (every generating method), or letters [A]..[Z] (FIRST, where
#: each identifier must be one token: "10" is two in many vocabularies, "J" is one)
IDENTIFIER_KINDS = ("numbers", "letters")


def passage_identifiers(kind: str, n: int) -> list[str]:
    """The identifiers of n passages: "1".."n", or "A".. (at most 26)."""
    if kind == "numbers":
        return [str(i) for i in range(1, n + 1)]
    if kind == "letters":
        if n > 26:
            raise ValueError(f"{n} passages need more than the 26 letter identifiers A..Z; show at most 26")
        return [chr(ord("A") + i) for i in range(n)]
    raise ValueError(f"identifiers must be one of {IDENTIFIER_KINDS}, not {kind!r}")


def render_marked(texts: list[str], ids: list[str]) -> str:
    """The passage block with the given identifiers: '[A] text' lines."""
    return "\n".join(f"[{i}] {' '.join(t.split())}" for i, t in zip(ids, texts, strict=True))


#: the plain prompt with letters (FIRST): the text of LISTWISE with letter identifiers
LISTWISE_LETTERS = register(
    PromptTemplate(
        name="listwise-letters",
        version="1",
        template=(
            "I will give you {num} passages, each marked with a letter identifier in brackets. "
            "Rank the passages by how relevant they are to the search query.\n\n"
            "{passages}\n\n"
            "Search query: {query}\n\n"
            "Rank the {num} passages above from most to least relevant to the search query. "
            "Answer only with all {num} identifiers in descending order of relevance, like [B] > [A] > [C], "
            "each identifier once, and nothing else.\n\n"
            "Ranking:"
        ),
    )
)


# ------------------------------------------------------------------------------------------ presets
@dataclass(frozen=True)
class ListwisePreset:
    """A listwise prompt as a published ranker sends it, as chat turns (`messages`) or one text (`text`).

    `parts` are the preset's fixed texts (str.format fields: num, query, id, passage, identifier,
    example); `words` fill {identifier} and {example} for each identifier kind. The name, version and a
    hash of every text are the preset's `identity()`, part of every label key: bump `version` when a
    text changes.
    """

    name: str
    version: str
    parts: Mapping[str, str]
    words: Mapping[str, Mapping[str, str]]
    passage_turns: bool  # each passage its own user turn, acknowledged by the assistant (RankGPT)
    replace_brackets: bool = False  # "[12]" inside a passage becomes "(12)" (rank_llm's _replace_number)

    def identity(self) -> dict[str, str]:
        return {
            "preset": self.name,
            "version": self.version,
            "hash": stable_hash(
                {"parts": dict(self.parts), "words": {k: dict(v) for k, v in self.words.items()}}, 16
            ),
        }

    def _passage(self, text: str) -> str:
        text = " ".join(text.split())
        return re.sub(r"\[(\d+)\]", r"(\1)", text) if self.replace_brackets else text

    def messages(
        self, query: str, texts: list[str], ids: list[str], kind: str = "numbers"
    ) -> list[dict[str, str]]:
        """The chat turns of one window: passages marked with `ids` (of identifier `kind`)."""
        p, words = self.parts, self.words[kind]
        fields = {"num": str(len(texts)), "query": query, **words}
        out = [{"role": "system", "content": p["system"]}]
        if self.passage_turns:
            out.append({"role": "user", "content": p["prefix"].format(**fields)})
            if p.get("ack"):
                out.append({"role": "assistant", "content": p["ack"]})
            for i, t in zip(ids, texts, strict=True):
                out.append({"role": "user", "content": p["passage"].format(id=i, passage=self._passage(t))})
                out.append({"role": "assistant", "content": p["received"].format(id=i)})
            out.append({"role": "user", "content": p["post"].format(**fields)})
            return out
        body = "".join(
            p["passage"].format(id=i, passage=self._passage(t)) for i, t in zip(ids, texts, strict=True)
        )
        out.append(
            {"role": "user", "content": p["prefix"].format(**fields) + body + p["post"].format(**fields)}
        )
        return out

    def text(self, query: str, texts: list[str], ids: list[str], kind: str = "numbers") -> str:
        """The same prompt as one text (for a completions endpoint or a model without chat turns): the
        system message, then the user's turns, blank lines between; the assistant's acknowledgements,
        which only make sense as turns, left out."""
        turns = self.messages(query, texts, ids, kind)
        if not self.passage_turns:
            return "\n\n".join(m["content"] for m in turns)
        users = [m["content"] for m in turns if m["role"] != "assistant"]
        system, prefix, passages, post = users[0], users[1], users[2:-1], users[-1]
        return "\n\n".join([system, prefix, "\n".join(passages), post])


#: RankGPT (Sun et al. 2023, github.com/sunnweiwei/RankGPT `create_permutation_instruction`): its system
#: message, an introduction the assistant acknowledges, each passage a user turn the assistant
#: acknowledges, and the request for "[] > []" last. The texts are RankGPT's, typos included.
RANKGPT = ListwisePreset(
    name="rankgpt",
    version="1",
    parts={
        "system": "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query.",
        "prefix": "I will provide you with {num} passages, each indicated by {identifier} identifier []. \nRank the passages based on their relevance to query: {query}.",
        "ack": "Okay, please provide the passages.",
        "passage": "[{id}] {passage}",
        "received": "Received passage [{id}].",
        "post": "Search Query: {query}. \nRank the {num} passages above based on their relevance to the search query. The passages should be listed in descending order using identifiers. The most relevant passages should be listed first. The output format should be [] > [], e.g., {example}. Only response the ranking results, do not say any word or explain.",
    },
    words={
        "numbers": {"identifier": "number", "example": "[1] > [2]"},
        "letters": {"identifier": "letter", "example": "[A] > [B]"},
    },
    passage_turns=True,
)

#: RankZephyr (Pradeep et al. 2023; rank_llm's RankListwiseOSLLM prompt): the RankLLM system message and
#: one user message holding every passage, asking for "[] > []" and nothing else; "[n]" inside a passage
#: is written "(n)" as rank_llm does.
RANKZEPHYR = ListwisePreset(
    name="rankzephyr",
    version="1",
    parts={
        "system": "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query.",
        "prefix": "I will provide you with {num} passages, each indicated by {identifier} identifier []. Rank the passages based on their relevance to the search query: {query}.\n\n",
        "passage": "[{id}] {passage}\n",
        "post": "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. All the passages should be included and listed using identifiers, in descending order of relevance. The output format should be [] > [], e.g., {example}, Only respond with the ranking results, do not say any word or explain.",
    },
    words={
        "numbers": {"identifier": "a numerical", "example": "[4] > [2]"},
        "letters": {"identifier": "an alphabetical", "example": "[D] > [B]"},
    },
    passage_turns=False,
    replace_brackets=True,
)

#: the listwise prompt presets by name; "plain" is this module's LISTWISE / LISTWISE_JSON (one text, or
#: one user message)
PRESETS: dict[str, ListwisePreset | None] = {"plain": None, "rankgpt": RANKGPT, "rankzephyr": RANKZEPHYR}
