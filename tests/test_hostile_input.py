"""Hostile input and faults (issue #18): each input is refused with one line naming the file (and line),
never a traceback, a hang, a silent success or a file the tool cannot read back."""

from __future__ import annotations

import gzip
import json
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rankdistill.cli import app
from rankdistill.cli.label_cmds import read_query_file
from rankdistill.data import read_beir_qrels, read_corpus, read_qrels, read_queries, read_run, write_run
from rankdistill.data.trec import read_trec_qrels
from rankdistill.data.types import Corpus, Run
from rankdistill.errors import DataError, RankdistillError
from rankdistill.labels import LabelStore
from rankdistill.labels.store import LabelRecord
from rankdistill.pipeline.config import ConfigError
from rankdistill.pipeline.config import load_config as load_pipeline_config
from rankdistill.retrieval.bm25 import BM25Retriever
from rankdistill.training.config import load_config as load_train_config

BOMB = """\
{head}
      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
PIPELINE_BOMB = BOMB.format(head="dataset: {name: scifact}\ntrain:\n  losses:\n  - name: soft_bce\n    args:")
TRAIN_BOMB = BOMB.format(
    head="output_dir: out\nphases: [{name: p, data: {jsonl: x.jsonl}}]\nlosses:\n  - name: soft_bce\n    args:"
)
TRAIN_OK = "output_dir: out\nphases: [{name: p, data: {jsonl: x.jsonl}}]\n"


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def beir_folder(root: Path, docs: dict[str, str], queries: dict[str, str], qrels: str) -> Path:
    folder = root / "tiny"
    (folder / "qrels").mkdir(parents=True)
    lines = (json.dumps({"_id": k, "title": "", "text": v}) for k, v in docs.items())
    write(folder / "corpus.jsonl", "".join(line + "\n" for line in lines))
    write(
        folder / "queries.jsonl",
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()),
    )
    write(folder / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n" + qrels)
    return folder


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RANKDISTILL_PROGRESS", "0")
    monkeypatch.delenv("RANKDISTILL_DATA_DIR", raising=False)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result, *needles: str) -> str:
    """The one-line error of a CLI call that must fail with a RankdistillError."""
    assert isinstance(result.exception, RankdistillError), (result.exception, result.output)
    message = str(result.exception)
    for needle in needles:
        assert needle in message, message
    return message


# -- (4) YAML alias bombs ------------------------------------------------------------------------------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def test_run_check_refuses_yaml_alias_bomb(tmp_path):
    config = write(tmp_path / "bomb.yaml", PIPELINE_BOMB)
    assert len(PIPELINE_BOMB) < 1024
    # a subprocess with a memory cap and a timeout: without the bound the bomb must not take the test host down
    env = {**os.environ, "RANKDISTILL_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "rankdistill", "run", "--check", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, preexec_fn=_limit_memory)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and "expands to more than" in lines[0], lines


def test_train_refuses_yaml_alias_bomb(tmp_path):
    config = write(tmp_path / "bomb.yaml", TRAIN_BOMB)
    message = refused(invoke("train", config, "--check"), str(config), "expands to more than")
    assert "\n" not in message
    with pytest.raises(RankdistillError, match="expands to more than"):
        load_train_config(config)


def test_yaml_anchors_within_bounds_still_work(tmp_path):
    from rankdistill.validation import parse_yaml

    text = "base: &b {name: scifact}\nother: *b\nmerged:\n  <<: *b\n  name: nfcorpus\n"
    assert parse_yaml(text, "x.yaml") == {
        "base": {"name": "scifact"},
        "other": {"name": "scifact"},
        "merged": {"name": "nfcorpus"},
    }


@pytest.mark.parametrize(
    "text, needle",
    [
        ("a: &a [*a]\n", "recursive alias"),
        ("a: " + "[" * 200 + "]" * 200 + "\n", "nested"),
        ("a: 2024-02-31\n", "invalid YAML value"),
        ("a: \x00\n", "invalid YAML"),
    ],
)
def test_hostile_yaml_is_one_line_naming_the_file(tmp_path, text, needle):
    config = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError, match=needle) as info:
        load_pipeline_config(config)
    assert str(info.value).startswith(str(config)) and "\n" not in str(info.value)


# -- (6) ids with whitespace ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, reader, where",
    [
        ("corpus.jsonl", '{"_id": "d 1", "text": "x"}\n', read_corpus, ":1:"),
        ("queries.jsonl", '{"_id": "q\\t1", "text": "x"}\n', read_queries, ":1:"),
        ("qrels.tsv", "query-id\tcorpus-id\tscore\nq 1\td1\t1\n", read_beir_qrels, ":2:"),
        ("qrels.tsv", "q1\td 1\t1\n", read_qrels, ":1:"),
        ("run.trec", "q1 Q0 d\x011 1 2.0 tag\n", read_run, ":1:"),
        ("qrels.txt", "q1 0 d\x001 1\n", read_trec_qrels, ":1:"),
        (
            "synthetic.jsonl",
            '{"query_id": "s 1", "text": "x", "candidates": ["d1"]}\n',
            read_query_file,
            ":1:",
        ),
        (
            "synthetic.jsonl",
            '{"query_id": "s1", "text": "x", "candidates": ["d 1"]}\n',
            read_query_file,
            ":1:",
        ),
    ],
)
def test_ids_with_whitespace_are_refused_at_read_time(tmp_path, name, content, reader, where):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match="may not contain whitespace") as info:
        reader(path)
    assert f"{path}{where}" in str(info.value)


def test_write_run_never_writes_a_line_the_reader_refuses(tmp_path):
    out = write(tmp_path / "run.trec", "q1 Q0 d1 1 1.000000 old\n")
    for bad in (Run({"q 1": {"d1": 1.0}}), Run({"q1": {"d\t1": 1.0}}), Run({"q1": {"d1": float("nan")}})):
        with pytest.raises(DataError, match=str(out)):
            write_run(bad, out)
        assert out.read_text() == "q1 Q0 d1 1 1.000000 old\n"  # the old file is untouched
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]  # no temporary left behind
    write_run(Run({"q1": {"d1": 2.0}}, name="my tag"), out)
    assert read_run(out).scores == {"q1": {"d1": 2.0}} and out.read_text().split()[-1] == "my_tag"


# -- (7) tracebacks instead of messages -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, reader",
    [
        ("corpus.jsonl", b'{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "\xff"}\n', read_corpus),
        ("queries.jsonl", b'{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "\xc3("}\n', read_queries),
        ("qrels.tsv", b"q1\td1\t1\nq2\td\xff\t1\n", read_qrels),
        ("qrels.txt", b"q1 0 d1 1\nq2 0 d\xff 1\n", read_trec_qrels),
        ("run.trec", b"q1 Q0 d1 1 2 t\nq1 Q0 d\xfe 2 1 t\n", read_run),
        (
            "synthetic.jsonl",
            b'{"query_id": "s1", "text": "x", "candidates": ["d1"]}\n{"\xff": 1}\n',
            read_query_file,
        ),
    ],
)
def test_invalid_utf8_names_file_and_line(tmp_path, name, content, reader):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        reader(path)
    assert f"{path}:2:" in str(info.value)


@pytest.mark.parametrize("loader", [load_pipeline_config, load_train_config])
def test_config_invalid_utf8_or_folder_is_refused(tmp_path, loader):
    config = write(tmp_path / "c.yaml", b"dataset: {name: sci\xfffact}\n")
    with pytest.raises(RankdistillError, match="not valid UTF-8"):
        loader(config)
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(RankdistillError, match="is a folder"):
        loader(tmp_path / "folder.yaml")


def test_gz_that_is_not_gzip(tmp_path):
    path = write(tmp_path / "corpus.jsonl.gz", '{"_id": "d1", "text": "x"}\n')
    with pytest.raises(DataError, match=f"{path}: is not gzip data"):
        read_corpus(path)


def test_truncated_gzip_is_a_message_not_aborted(tmp_path):
    rows = "".join(f"q{i} Q0 d{i} 1 {i}.5 tag\n" for i in range(20000)).encode()
    packed = gzip.compress(rows)
    run = write(tmp_path / "run.trec.gz", packed[: len(packed) // 2])
    qrels = write(tmp_path / "qrels.tsv", "q1\td1\t1\n")
    with pytest.raises(DataError, match=f"{run}: gzip data ends early after line"):
        read_run(run)
    env = {**os.environ, "RANKDISTILL_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "rankdistill", "evaluate", "--run", str(run), "--qrels", str(qrels)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "Aborted" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"error: {run}: gzip data ends early"), proc.stderr


def test_empty_corpus_and_empty_documents(tmp_path):
    with pytest.raises(DataError, match="no documents"):
        read_corpus(write(tmp_path / "empty.jsonl", "\n\n"))
    with pytest.raises(DataError, match="all 2 documents are empty"):
        read_corpus(write(tmp_path / "blank.jsonl", '{"_id": "a", "text": ""}\n{"_id": "b", "title": " "}\n'))


def test_retrieve_on_a_corpus_bm25_cannot_index(env):
    folder = beir_folder(env, {"d1": "the", "d2": "a of"}, {"q1": "what"}, "q1\td1\t1\n")
    result = invoke("retrieve", "-d", folder, "-o", env / "out.trec", "--cache-dir", env / "cache")
    refused(result, str(folder / "corpus.jsonl"), "BM25 can index")
    assert not (env / "out.trec").exists()
    with pytest.raises(DataError, match="no documents to index"):
        BM25Retriever(Corpus(), cache_dir=env / "cache")


def _store_with_labels(path: Path, n: int) -> None:
    with LabelStore(path) as store:
        tid = store.register_teacher("t", {"name": "t"})
        records = [
            LabelRecord(
                key=f"k{i}",
                kind="pointwise",
                teacher="t",
                value={"score": i},
                doc_ids=[f"d{i}"],
                teacher_id=tid,
            )
            for i in range(n)
        ]
        store.put_many(records)


def test_damaged_label_store_is_a_message(env):
    store = env / "labels.sqlite"
    _store_with_labels(store, 3000)
    data = bytearray(store.read_bytes())
    for page in range(4096 * 2, len(data) - 4096, 4096):  # keep the header and schema page, damage the rest
        data[page + 100 : page + 2000] = b"\x07" * 1900
    store.write_bytes(bytes(data))
    refused(invoke("labels", store, "--export", env / "out.jsonl"), str(store), "damaged")
    assert not (env / "out.jsonl").exists() and not (env / "out.jsonl.tmp").exists()


def test_label_value_that_is_not_json(env):
    store = env / "labels.sqlite"
    _store_with_labels(store, 2)
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE labels SET value='{\"score\": ' WHERE key='k1'")
    conn.close()
    refused(
        invoke("labels", store, "--export", env / "out.jsonl"), str(store), "label 'k1'", "not valid JSON"
    )
    assert not (env / "out.jsonl").exists() and not (env / "out.jsonl.tmp").exists()
    with LabelStore(store) as opened, pytest.raises(DataError, match="label 'k1'"):
        opened.get_many(["k0", "k1"])


@pytest.mark.parametrize("grade", ["inf", "-inf", "nan", "1e30", "4294967296"])
@pytest.mark.parametrize("form", ["beir", "trec"])
def test_out_of_range_grades(tmp_path, grade, form):
    line = f"q1\td1\t{grade}\n" if form == "beir" else f"q1 0 d1 {grade}\n"
    path = write(tmp_path / "qrels.txt", "q0\td0\t1\n" + line if form == "beir" else "q0 0 d0 1\n" + line)
    with pytest.raises(DataError, match=f"{path}:2: grade '{grade}'"):
        read_qrels(path)


def test_deeply_nested_json(tmp_path):
    path = write(
        tmp_path / "corpus.jsonl",
        '{"_id": "d1", "text": "x", "metadata": ' + "[" * 100000 + "]" * 100000 + "}\n",
    )
    with pytest.raises(DataError, match=f"{path}:1: JSON nested too deeply"):
        read_corpus(path)


def test_folder_where_a_file_is_expected(env):
    folder = env / "a.trec"
    folder.mkdir()
    qrels = write(env / "q.tsv", "q1\td1\t1\n")
    refused(invoke("evaluate", "--run", folder, "--qrels", qrels), f"{folder}: is a folder")
    refused(
        invoke("evaluate", "--run", write(env / "r.trec", "q1 Q0 d1 1 1 t\n"), "--qrels", folder),
        "is a folder",
    )
    for reader in (read_run, read_qrels, read_trec_qrels, read_beir_qrels, read_query_file):
        with pytest.raises(DataError, match="is a folder"):
            reader(folder)
    with pytest.raises(DataError, match="is a folder"):
        LabelStore(folder)
    with pytest.raises(DataError, match="is a folder"):
        write_run(Run({"q1": {"d1": 1.0}}), folder)


@pytest.mark.parametrize("option", [["-t", "nosuch"], ["-t", "bm25", "--fusion", "bogus"]])
def test_bad_teacher_or_fusion_leaves_no_store(env, option):
    folder = beir_folder(env, {"d1": "apple pie", "d2": "cherry jam"}, {"q1": "apple"}, "q1\td1\t1\n")
    store = env / "labels.sqlite"
    result = invoke("label", "-d", folder, "-s", store, "--no-evaluate", *option)
    assert result.exit_code == 2, (result.exception, result.output)
    assert option[-2] in result.output and "Invalid value" in result.output
    assert not store.exists()


# -- (8) nonsense accepted silently ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "qrels, needle",
    [
        ("", "no judgements"),
        ("query-id\tcorpus-id\tscore\n", "no judgements"),
        ("q1\td1\t0\n", "every grade is 0"),
    ],
)
def test_evaluate_refuses_empty_or_all_zero_qrels(env, qrels, needle):
    run = write(env / "r.trec", "q1 Q0 d1 1 1.0 t\n")
    path = write(env / "qrels.tsv", qrels)
    refused(invoke("evaluate", "--run", run, "--qrels", path), str(path), needle)


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_run_scores_that_are_not_finite(tmp_path, score):
    path = write(tmp_path / "r.trec", f"q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 {score} t\n")
    with pytest.raises(DataError, match=f"{path}:2: score '{score}' is not a finite number"):
        read_run(path)


@pytest.mark.parametrize(
    "loader, text",
    [
        (load_pipeline_config, "dataset: {name: scifact}\nseed: 1\nlabels: {depth: 5}\nseed: 2\n"),
        (load_train_config, TRAIN_OK + "seed: 1\nstudent:\n  base: minilm\n  base: other\n"),
    ],
)
def test_duplicate_yaml_key_is_refused(tmp_path, loader, text):
    config = write(tmp_path / "c.yaml", text)
    with pytest.raises(RankdistillError, match=r"duplicate key '(seed|base)' \(first on line \d\)") as info:
        loader(config)
    assert str(info.value).startswith(f"{config}:")


def test_run_check_refuses_missing_dataset_and_leaking_split(env):
    missing = write(env / "missing.yaml", "dataset: {name: no-such-collection}\n")
    refused(invoke("run", "--check", missing, "--data-dir", env), str(missing), "dataset.name", "not found")
    folder = beir_folder(env, {"d1": "apple pie"}, {"q1": "apple"}, "q1\td1\t1\n")
    leak = write(env / "leak.yaml", f"dataset: {{name: {folder}}}\ntrain_queries: {{split: test}}\n")
    refused(invoke("run", "--check", leak), str(leak), "train_queries.split 'test' is dataset.eval_split")
    nosplit = write(env / "nosplit.yaml", f"dataset: {{name: {folder}}}\n")  # default training split: train
    refused(invoke("run", "--check", nosplit), "train_queries.split: no split 'train'")
    (folder / "qrels" / "train.tsv").write_text("q1\td1\t1\n")
    ok = invoke("run", "--check", nosplit, "--run-dir", env / "run")
    assert ok.exit_code == 0, (ok.exception, ok.output)


def test_label_ndcg_counts_queries_without_candidates(env):
    docs = {"d1": "apple banana", "d2": "cherry grape", "d3": "melon kiwi"}
    folder = beir_folder(env, docs, {"q1": "apple", "q2": "zebra"}, "q1\td1\t1\nq2\td2\t1\n")
    result = invoke(
        "label", "-d", folder, "-t", "bm25", "-s", env / "labels.sqlite", "--cache-dir", env / "cache"
    )
    assert result.exit_code == 0, (result.exception, result.output)
    summary = json.loads(result.output[result.output.index("{") :])
    # q1 finds its document (1.0); q2 matches nothing and counts as 0, not left out
    assert summary["nDCG@10"] == {"first_stage": 0.5, "teacher": 0.5}


def test_zero_byte_label_store_is_not_new(env):
    store = write(env / "labels.sqlite", b"")
    with pytest.raises(DataError, match=f"{store}: is an empty file"):
        LabelStore(store)
    refused(invoke("labels", store), "is an empty file")
    assert store.stat().st_size == 0
