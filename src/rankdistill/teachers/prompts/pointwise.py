"""Prompts of the pointwise LLM teachers (true/false, yes/no, query likelihood).

Bump a prompt's version when you change its text: the text's hash is part of every label key anyway, the
version tells people which text a label came from.
"""

from __future__ import annotations

from rankdistill.teachers.prompts import PromptTemplate, register

# monoT5 (Nogueira et al., 2020), the prompt InRanker distils: the next token is "true" or "false".
MONOT5 = register(PromptTemplate("monot5", "1", "Query: {query} Document: {document} Relevant:"))

# The same judgement asked in words, for instruction-tuned causal models: next token " yes" or " no".
YES_NO = register(
    PromptTemplate(
        "yes-no",
        "1",
        "Document: {document}\nQuery: {query}\n"
        "Is the document relevant to the query? Answer yes or no.\nAnswer:",
    )
)

# UPR (Sachan et al., 2022): score a document by the mean log-probability of the query given it.
# The query is the continuation scored after this prompt.
UPR = register(
    PromptTemplate(
        "upr", "1", "Passage: {document}\nPlease write a question based on this passage.\nQuestion:"
    )
)

__all__ = ["MONOT5", "UPR", "YES_NO"]
