"""ReasoningRank prompts (Ji et al., 2024): explicit reasoning for one (query, document) and comparison
reasoning for a ranked window, plus the retry prompt that shows the model why its last answer was rejected.

Answers are JSON objects checked against the pydantic schemas in `rankdistill.teachers.reasoning`.
"""

from __future__ import annotations

from rankdistill.teachers.prompts import PromptTemplate, register

EXPLICIT = register(
    PromptTemplate(
        name="reasoning-explicit",
        version="1",
        template=(
            "Search query: {query}\n\n"
            "Document: {document}\n\n"
            "Explain in one to three sentences how the document does or does not address the search query, "
            "then judge its relevance: 0 means not relevant, 1 partly relevant, 2 highly relevant. "
            'Answer with a JSON object {{"reasoning": "...", "relevance": 0}} and nothing else.\n\n'
            "Answer:"
        ),
    )
)

COMPARISON = register(
    PromptTemplate(
        name="reasoning-comparison",
        version="1",
        template=(
            "Search query: {query}\n\n"
            "The {num} passages below are ranked from most to least relevant to the search query:\n\n"
            "{passages}\n\n"
            "For each passage except the last, explain in one sentence why it is ranked above the passage "
            "that follows it. The pairs, in order, are: {pairs}. "
            'Answer with a JSON object {{"comparisons": [{{"higher": 3, "lower": 1, "reason": "..."}}, ...]}} '
            "with exactly {num_pairs} items, one per pair in that order, and nothing else.\n\n"
            "Answer:"
        ),
    )
)

RETRY = register(
    PromptTemplate(
        name="reasoning-retry",
        version="1",
        template=(
            "{prompt} {answer}\n\n"
            "That answer is invalid: {error}\n"
            "Write the whole answer again as one corrected JSON object and nothing else.\n\n"
            "Answer:"
        ),
    )
)
