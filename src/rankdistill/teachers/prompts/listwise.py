"""Listwise ranking prompts (RankGPT, Sun et al. 2023; reused by RRADistill's one-pass pipeline).

Passages are numbered [1]..[n] in the order the pre-ranker gave them; the answer is a permutation of those
identifiers. Two variants: a free-text answer ("[2] > [1] > [3]") for backends that cannot constrain their
output, and a JSON answer ({"ranking": [2, 1, 3]}) for backends that take a JSON schema (llama.cpp grammars,
OpenAI `response_format`). The same parser reads both.
"""

from __future__ import annotations

from rankdistill.teachers.prompts import PromptTemplate, register

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
