"""ReasoningRank prompts (Ji et al., 2024): explicit reasoning for one (query, document) and comparison
reasoning for a ranked window, plus the retry prompt that shows the model why its last answer was rejected.

Answers are JSON objects checked against the pydantic schemas in `rankdistill.teachers.reasoning`.
"""

from __future__ import annotations

from rankdistill.teachers.prompts import PromptTemplate, register

EXPLICIT = register(
    PromptTemplate(
        name="reasoning-explicit",
        # 2: describe the JSON keys instead of showing a placeholder answer (a small model copied "...")
        version="2",
        template=(
            "Search query: {query}\n\n"
            "Document: {document}\n\n"
            "Explain in one to three sentences how the document does or does not address the search query, "
            "then judge its relevance: 0 means not relevant, 1 partly relevant, 2 highly relevant. "
            'Answer with a JSON object with two keys: "reasoning", your explanation, and "relevance", the '
            "grade as a number.\n\n"
            "Answer:"
        ),
    )
)

COMPARISON = register(
    PromptTemplate(
        name="reasoning-comparison",
        # 2: describe the JSON keys instead of showing a placeholder answer
        version="2",
        template=(
            "Search query: {query}\n\n"
            "The {num} passages below are ranked from most to least relevant to the search query:\n\n"
            "{passages}\n\n"
            "For each passage except the last, explain in one sentence why it is ranked above the passage "
            "that follows it. The pairs, in order, are: {pairs}. "
            'Answer with a JSON object whose "comparisons" lists exactly {num_pairs} objects, one per pair in that '
            'order, each with the keys "higher" and "lower" (the two identifiers, as numbers) and "reason" (your '
            "sentence in your own words).\n\n"
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
