"""Few-shot prompts that make a causal LM write a query for a document (InPars, Bonifacio et al. 2022).

Both use the three MS MARCO examples of the InPars paper. "vanilla" asks for a relevant query; "gbq"
(good/bad question) shows a generic "bad" question beside a more specific "good" one and asks for the
good one. The prompt ends right after the label, so the model's first line is the query.
"""

from __future__ import annotations

from rankdistill.teachers.prompts import PromptTemplate, register

# MS MARCO passages of the InPars prompts; kept exactly once so both styles share them.
_DOCS = (
    "We don't know a lot about the effects of caffeine during pregnancy on you and your baby. So it's best to "
    "limit the amount you get each day. If you are pregnant, limit caffeine to 200 milligrams each day. This is "
    "about the amount in 1½ 8-ounce cups of coffee or one 12-ounce cup of coffee.",
    "Passiflora herbertiana. A rare passion fruit native to Australia. Fruits are green-skinned, white fleshed, "
    "with an unknown edible rating. Some sources list the fruit as edible, sweet and tasty, while others list "
    "the fruits as being bitter and inedible.",
    "The Canadian Armed Forces. 1  The first large-scale Canadian peacekeeping mission started in Egypt on "
    "November 24, 1956. 2  There are approximately 65,000 Regular Force and 25,000 reservist members in the "
    "Canadian military. 3  In Canada, August 9 is designated as National Peacekeepers' Day.",
)
_BAD = (
    "Is a little caffeine ok during pregnancy?",
    "What fruit is native to Australia?",
    "How large is the Canadian military?",
)
_GOOD = (
    "How much caffeine is ok for a pregnant woman to have?",
    "What is Passiflora herbertiana (a rare passion fruit) and how does it taste like?",
    "Information on the Canadian Armed Forces size and history.",
)


def _vanilla() -> str:
    shots = [
        f"Example {i}:\nDocument: {d}\nRelevant Query: {q}\n"
        for i, (d, q) in enumerate(zip(_DOCS, _BAD, strict=True), 1)
    ]
    return "\n".join(shots) + "\nExample 4:\nDocument: {document}\nRelevant Query:"


def _gbq() -> str:
    shots = [
        f"Example {i}:\nDocument: {d}\nGood Question: {g}\nBad Question: {b}\n"
        for i, (d, g, b) in enumerate(zip(_DOCS, _GOOD, _BAD, strict=True), 1)
    ]
    return "\n".join(shots) + "\nExample 4:\nDocument: {document}\nGood Question:"


INPARS_VANILLA = register(PromptTemplate(name="inpars-vanilla", version="1", template=_vanilla()))
INPARS_GBQ = register(PromptTemplate(name="inpars-gbq", version="1", template=_gbq()))

#: styles a user may name on the command line, to their templates
QUERYGEN_PROMPTS = {"vanilla": INPARS_VANILLA, "gbq": INPARS_GBQ}
