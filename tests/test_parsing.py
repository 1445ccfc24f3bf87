"""The permutation and reasoning parsers: exact repairs on known answers, and hypothesis fuzzing over
malformed ones (they must never raise and must always return a full permutation)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankdistill.teachers.parsing import parse_permutation, parse_structured, sum_repairs
from rankdistill.teachers.reasoning import ComparisonReasoning, ExplicitReasoning

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def is_permutation(order: list[int], n: int) -> bool:
    return sorted(order) == list(range(n))


# -- known answers ------------------------------------------------------------------------------------


def test_clean_bracket_answer_needs_no_repair():
    p = parse_permutation("[2] > [3] > [1]", 3)
    assert p.order == [1, 2, 0]
    assert p.format == "brackets"
    assert not p.repaired


def test_duplicates_unknown_missing_and_free_text_are_each_counted():
    p = parse_permutation("Sure! The ranking is [4] > [2] > [4] > [9] > [0] > [1]. Hope this helps.", 5)
    assert p.answered == [3, 1, 0]
    assert p.missing == [2, 4]  # left out, appended in input order
    assert p.order == [3, 1, 0, 2, 4]
    assert p.repairs == {"duplicate": 1, "unknown": 2, "missing": 2, "free_text": 1, "no_answer": 0}
    assert p.unknown == ["9", "0"]


def test_json_answer_and_string_identifiers():
    p = parse_permutation('```json\n{"ranking": [3, "1", "[2]", true, 3]}\n```', 3)
    assert p.format == "json"
    assert p.order == [2, 0, 1]
    assert p.repairs["duplicate"] == 1 and p.repairs["unknown"] == 1 and p.free_text


def test_bare_numbers_and_no_answer():
    assert parse_permutation("3, 1, 2", 3).order == [2, 0, 1]
    p = parse_permutation("I cannot rank these passages.", 4)
    assert p.order == [0, 1, 2, 3]
    assert p.repairs["no_answer"] == 1 and p.repairs["missing"] == 4 and p.free_text


def test_sum_repairs_counts_answers():
    parses = [parse_permutation("[1] > [2]", 2), parse_permutation("[1] > [1]", 2)]
    total = sum_repairs(parses)
    assert total["answers"] == 2 and total["answers_repaired"] == 1
    assert total["duplicate"] == 1 and total["missing"] == 1


def test_structured_answer_with_text_around():
    text = 'Here you go: {"reasoning": "The document explains the screen resolution.", "relevance": 2} Done.'
    p = parse_structured(text, ExplicitReasoning)
    assert p.ok and p.value.relevance == 2 and p.free_text


def test_structured_errors_say_what_is_wrong():
    p = parse_structured('{"reasoning": "...", "relevance": 7}', ExplicitReasoning)
    assert not p.ok
    assert "reasoning" in p.error and "relevance" in p.error
    assert parse_structured("no json here", ExplicitReasoning).error == "no JSON object found in the answer"


def test_comparison_must_follow_the_permutation():
    answer = {"comparisons": [{"higher": 2, "lower": 1, "reason": "it names the winner of the prize"}]}
    p = parse_structured(json.dumps(answer), ComparisonReasoning, context={"pairs": [(1, 2)]})
    assert not p.ok and "higher=1" in p.error
    answer["comparisons"][0].update(higher=1, lower=2)
    assert parse_structured(json.dumps(answer), ComparisonReasoning, context={"pairs": [(1, 2)]}).ok


# -- fuzzing ------------------------------------------------------------------------------------------

noise = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
junk_chars = '[]{}",:>0123456789 \n-+.eE' + "abcxyz"


@FUZZ
@given(text=st.text(max_size=400), n=st.integers(min_value=0, max_value=40))
def test_any_text_gives_a_full_permutation(text, n):
    p = parse_permutation(text, n)
    assert is_permutation(p.order, n)
    assert set(p.answered).isdisjoint(p.missing)
    assert p.missing == sorted(p.missing)
    assert all(v >= 0 for v in p.repairs.values())


@FUZZ
@given(text=st.text(alphabet=junk_chars, max_size=300), n=st.integers(min_value=1, max_value=25))
def test_json_and_bracket_shaped_junk_gives_a_full_permutation(text, n):
    p = parse_permutation(text, n)
    assert is_permutation(p.order, n)


@FUZZ
@given(
    perm=st.integers(min_value=1, max_value=30).flatmap(lambda n: st.permutations(list(range(1, n + 1)))),
    sep=st.sampled_from([" > ", ">", ", ", " ", "\n", " >\n"]),
    before=noise,
    after=noise,
)
def test_a_permutation_inside_noise_is_recovered(perm, sep, before, after):
    text = f"{before}\n{sep.join(f'[{i}]' for i in perm)}\n{after}"
    p = parse_permutation(text, len(perm))
    # noise may add bracketed numbers of its own, but never before the answer's first identifier is read
    if "[" not in before and "{" not in before and "[" not in after and "{" not in after:
        assert [i + 1 for i in p.order] == list(perm)
        assert p.repairs["duplicate"] == 0 and p.repairs["missing"] == 0


@FUZZ
@given(
    answer=st.lists(st.integers(min_value=-5, max_value=35), max_size=40),
    n=st.integers(min_value=1, max_value=30),
    as_json=st.booleans(),
)
def test_repairs_match_what_was_wrong(answer, n, as_json):
    text = json.dumps({"ranking": answer}) if as_json else " > ".join(f"[{i}]" for i in answer)
    p = parse_permutation(text, n)
    valid = [i for i in answer if 1 <= i <= n]
    distinct = list(dict.fromkeys(valid))
    assert [i + 1 for i in p.answered] == distinct
    assert p.repairs["duplicate"] == len(valid) - len(distinct)
    assert p.repairs["unknown"] == len(answer) - len(valid)
    assert p.repairs["missing"] == n - len(distinct)
    assert p.repairs["free_text"] == 0
    assert is_permutation(p.order, n)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(
    obj=st.one_of(
        json_values,
        st.fixed_dictionaries({"reasoning": json_values, "relevance": json_values}),
        st.fixed_dictionaries(
            {
                "comparisons": st.lists(
                    st.fixed_dictionaries(
                        {"higher": json_values, "lower": json_values, "reason": json_values}
                    ),
                    max_size=4,
                )
            }
        ),
    ),
    before=noise,
    after=noise,
    cut=st.integers(min_value=0, max_value=400),
)
def test_reasoning_parser_never_raises(obj, before, after, cut):
    text = before + json.dumps(obj) + after
    for candidate in (text, text[:cut]):  # also truncated answers, as when max_tokens cuts one off
        for model, context in ((ExplicitReasoning, None), (ComparisonReasoning, {"pairs": [(1, 2), (2, 3)]})):
            p = parse_structured(candidate, model, context=context)
            assert (p.value is None) != (p.error is None)
            if p.ok:
                assert isinstance(p.value, model)
