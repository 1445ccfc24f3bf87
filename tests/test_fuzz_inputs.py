"""Fuzzing the readers and config loaders: any input is either accepted or refused with a RankdistillError
that names the file, never another exception, and nothing is left behind in the folder."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from rankdistill.cli.label_cmds import read_query_file
from rankdistill.data import read_corpus, read_qrels, read_queries, read_run, write_run
from rankdistill.data.types import Run
from rankdistill.errors import RankdistillError
from rankdistill.pipeline.config import load_config as load_pipeline_config
from rankdistill.training.config import load_config as load_train_config

# Hypothesis caches what it learns in .hypothesis/ of the working directory: keep that out of the repository
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "rankdistill-hypothesis")
FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# pieces that make parsers take their unusual paths
WHITESPACE = ["", " ", "\t", "\x00", "\x0b", "\r", "\u2028", "\u00a0", "- "]
NUMBERS = ["nan", "inf", "-inf", "1e30", "1e999", "-0", "1.5", "0", "1", "2"]
SYNTAX = ["Q0", "query-id", '"', "'", "{", "[", "&a", "*a", "<<", ":", "#"]
TRICKY = WHITESPACE + NUMBERS + SYNTAX
token = st.one_of(st.sampled_from(TRICKY), st.text(max_size=6))
field = st.lists(token, min_size=0, max_size=3).map("".join)


def lines(fields: st.SearchStrategy[str], sep: str, min_cols: int, max_cols: int) -> st.SearchStrategy[str]:
    row = st.lists(fields, min_size=min_cols, max_size=max_cols).map(sep.join)
    return st.lists(st.one_of(row, st.text(max_size=20)), max_size=6).map(lambda rows: "\n".join(rows) + "\n")


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), field),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(field, inner, max_size=3)),
    max_leaves=8,
)
json_object = st.dictionaries(
    st.one_of(
        st.sampled_from(["_id", "text", "title", "metadata", "query_id", "candidates", "score"]), field
    ),
    st.one_of(
        json_value, st.lists(st.one_of(field, st.fixed_dictionaries({"doc_id": field, "score": json_value})))
    ),
    max_size=5,
)
jsonl_text = st.lists(
    st.one_of(json_object.map(json.dumps), json_value.map(json.dumps), st.text(max_size=20)), max_size=6
).map(lambda rows: "\n".join(rows) + "\n")


@st.composite
def file_bytes(draw, text: st.SearchStrategy[str], gz: bool = False) -> bytes:
    """Text, sometimes with raw bytes spliced in (not UTF-8); gzipped and sometimes cut short when `gz`."""
    data = draw(text).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    if gz:
        data = draw(st.sampled_from([gzip.compress(data), data]))
        data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    return data


def check(reader, name: str, data: bytes) -> None:
    """The property: `reader(path)` returns, or raises a RankdistillError naming the path; the folder
    holds only the input afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            reader(path)
        except RankdistillError as exc:
            assert str(path) in str(exc), str(exc)
        assert [p.name for p in Path(folder).iterdir()] == [name]


@FUZZ
@given(file_bytes(jsonl_text))
def test_fuzz_corpus(data):
    check(read_corpus, "corpus.jsonl", data)


@FUZZ
@given(file_bytes(jsonl_text, gz=True))
def test_fuzz_corpus_gz(data):
    check(read_corpus, "corpus.jsonl.gz", data)


@FUZZ
@given(file_bytes(jsonl_text))
def test_fuzz_queries(data):
    check(read_queries, "queries.jsonl", data)


@FUZZ
@given(file_bytes(jsonl_text))
def test_fuzz_label_queries_file(data):
    check(read_query_file, "synthetic.jsonl", data)


@FUZZ
@given(file_bytes(lines(field, "\t", 1, 4)))
def test_fuzz_qrels_tsv(data):
    check(read_qrels, "qrels.tsv", data)


@FUZZ
@given(file_bytes(lines(field, " ", 3, 5)))
def test_fuzz_trec_qrels(data):
    check(read_qrels, "qrels.txt", data)


@FUZZ
@given(file_bytes(lines(field, " ", 5, 7), gz=True))
def test_fuzz_trec_run(data):
    check(read_run, "run.trec.gz", data)


run_scores = st.dictionaries(
    field,
    st.dictionaries(field, st.one_of(st.floats(), st.integers(-(10**6), 10**6)), max_size=3),
    max_size=3,
)


@FUZZ
@given(run_scores)
def test_fuzz_write_run_round_trips_or_refuses(scores):
    """What write_run writes, read_run reads back (same documents, same order); what it refuses leaves
    no file."""
    run = Run(scores, name="fuzz")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.trec"
        try:
            write_run(run, out)
        except RankdistillError as exc:
            assert str(out) in str(exc)
            assert list(Path(folder).iterdir()) == []
            return
        assert [p.name for p in Path(folder).iterdir()] == ["out.trec"]
        expected = {q: {d: float(f"{s:.6f}") for d, s in docs.items()} for q, docs in scores.items() if docs}
        assert read_run(out).scores == expected


SECTIONS = ["name", "seed", "dataset", "bm25", "labels", "train", "evaluate", "queries", "train_queries"]
KEYS = ["k", "depth", "teacher", "student", "losses", "args", "split", "eval_split", "method"]
PIPELINE_KEYS = SECTIONS + KEYS
yaml_scalar = st.one_of(st.integers(-5, 10**12), st.floats(), st.booleans(), st.none(), field)
yaml_value = st.recursive(
    yaml_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(PIPELINE_KEYS), inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def yaml_text(draw) -> str:
    import yaml

    doc = draw(st.dictionaries(st.sampled_from(PIPELINE_KEYS), yaml_value, max_size=5))
    if draw(st.booleans()):
        doc["dataset"] = {"name": "scifact"}
    text = yaml.safe_dump(doc, allow_unicode=True)
    text_lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(0, 3))):  # splice in hostile lines: aliases, duplicates, junk
        extra = draw(
            st.sampled_from(["x: &a [1, 2]\n", "y: [*a, *a]\n", "seed: 3\n", "seed: 4\n", "  : :\n"])
        )
        text_lines.insert(draw(st.integers(0, len(text_lines))), extra)
    return "".join(text_lines)


@FUZZ
@given(file_bytes(yaml_text()))
def test_fuzz_pipeline_config(data):
    check(load_pipeline_config, "pipeline.yaml", data)


@FUZZ
@given(file_bytes(yaml_text()))
def test_fuzz_training_config(data):
    check(load_train_config, "train.yaml", data)


path_like = st.lists(
    st.one_of(field, st.sampled_from(["..", "~", "~nosuch", "*", "[", "/", "x" * 300])), max_size=40
)


@FUZZ
@given(path_like.map("/".join))
def test_fuzz_run_check_dataset_names(name):
    """`run --check`'s dataset check looks names up on disk: any name is found or refused in one line."""
    from rankdistill.pipeline.config import check_dataset, parse_config

    with tempfile.TemporaryDirectory() as folder:
        source = str(Path(folder) / "run.yaml")
        config = parse_config({"dataset": {"name": name, "data_dir": folder}}, source)
        try:
            check_dataset(config, source)
        except RankdistillError as exc:
            assert source in str(exc)
