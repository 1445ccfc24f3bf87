"""Datasets by name or folder: local BEIR folders first, then BEIR downloads or ir_datasets when online.

A name such as `scifact` or `beir/scifact` is looked for, in order, in: the `data_dir` argument
(`--data-dir`), `$RANKDISTILL_DATA_DIR`, and the download cache (`$RANKDISTILL_CACHE/datasets`,
default `~/.cache/rankdistill/datasets`). Only when none has it is the official BEIR zip downloaded
(md5-checked). `irds:<id>` loads any `ir_datasets` id.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import zipfile
from functools import cached_property
from pathlib import Path

from rankdistill.data.beir import corpus_path, qrels_splits, read_beir_qrels, read_corpus, read_queries
from rankdistill.data.jsonl import iter_lines
from rankdistill.data.trec import read_run
from rankdistill.data.types import Corpus, Qrels, Queries, Run
from rankdistill.errors import DataError, RankdistillError, require

log = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
# md5 sums published in the BEIR README for its zip files.
BEIR_MD5 = {
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "quora": "18fb154900ba42a600f84b839c173167",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
}


def cache_dir() -> Path:
    """Root of rankdistill's caches (BM25 indexes, embeddings, downloads); the data folder may be read-only."""
    return Path(os.environ.get("RANKDISTILL_CACHE", Path.home() / ".cache" / "rankdistill")).expanduser()


def data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    dirs = [Path(data_dir)] if data_dir else []
    if os.environ.get("RANKDISTILL_DATA_DIR"):
        dirs.append(Path(os.environ["RANKDISTILL_DATA_DIR"]))
    dirs.append(cache_dir() / "datasets")
    return dirs


def is_beir_folder(p: Path) -> bool:
    try:
        return p.is_dir() and ((p / "corpus.jsonl").exists() or (p / "corpus.jsonl.gz").exists())
    except OSError:  # a name too long for the file system is no folder
        return False


class Dataset:
    """A BEIR-layout folder: corpus, queries, qrels per split, and optional first-stage runs."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        if not is_beir_folder(self.path):
            raise DataError(
                "not a BEIR folder: expected corpus.jsonl[.gz], queries.jsonl and qrels/<split>.tsv",
                self.path,
            )
        self.name = name or self.path.name

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, path={str(self.path)!r})"

    @cached_property
    def corpus(self) -> Corpus:
        return read_corpus(corpus_path(self.path), name=self.name)

    @cached_property
    def queries(self) -> Queries:
        return read_queries(self.path / "queries.jsonl", name=self.name)

    @property
    def splits(self) -> list[str]:
        return qrels_splits(self.path)

    def qrels(self, split: str = "test", on_unknown_doc: str = "warn") -> Qrels:
        """Judgements of a split. Documents absent from the corpus: 'warn' (count them), 'error' or 'ignore'."""
        path = self.path / "qrels" / f"{split}.tsv"
        if not path.exists():
            raise DataError(
                f"unknown split {split!r}; available: {', '.join(self.splits) or 'none'}", self.path / "qrels"
            )
        qrels = read_beir_qrels(path, name=f"{self.name}/{split}")
        if on_unknown_doc != "ignore":
            check_qrels_docs(qrels, self.corpus, path, on_unknown_doc)
        return qrels

    def split_queries(self, split: str = "test") -> Queries:
        """The queries that have judgements in `split`, in queries.jsonl order."""
        qids = set(self.qrels(split, on_unknown_doc="ignore").query_ids)
        missing = qids - set(self.queries)
        if missing:
            raise DataError(
                f"{len(missing)} query ids of split {split!r} are not in queries.jsonl (e.g. {sorted(missing)[:3]})",
                self.path / "qrels" / f"{split}.tsv",
            )
        return self.queries.subset(q for q in self.queries if q in qids)

    @property
    def runs(self) -> dict[str, Path]:
        folder = self.path / "runs"
        return {p.stem: p for p in sorted(folder.glob("*.trec"))} if folder.is_dir() else {}

    def run(self, name: str) -> Run:
        if name not in self.runs:
            raise DataError(
                f"no run {name!r}; available: {', '.join(self.runs) or 'none'}", self.path / "runs"
            )
        return read_run(self.runs[name])


def check_qrels_docs(qrels: Qrels, corpus: Corpus, path: Path, mode: str = "warn") -> int:
    """Count judged documents missing from the corpus; 'error' raises naming the first one's line."""
    missing = [(q, d) for q, docs in qrels.items() for d in docs if d not in corpus]
    if missing and mode == "error":
        q, d = missing[0]
        line = _find_line(path, q, d)
        raise DataError(
            f"qrels name document {d!r} (query {q!r}) which is not in the corpus; {len(missing)} such judgements",
            path,
            line,
        )
    if missing and mode == "warn":
        log.warning(
            "%s: %d of %d judgements name documents absent from the corpus", path, len(missing), len(qrels)
        )
    return len(missing)


def _find_line(path: Path, qid: str, did: str) -> int | None:
    for lineno, line in iter_lines(path):
        cols = line.rstrip("\n").split("\t")
        if len(cols) >= 2 and cols[0].strip() == qid and cols[1].strip() == did:
            return lineno
    return None


def resolve_dataset(
    name_or_path: str | Path, data_dir: str | Path | None = None, download: bool = True
) -> Path:
    """Find a dataset folder by path or name; download BEIR datasets only when no local copy exists."""
    p = Path(name_or_path)
    with contextlib.suppress(RuntimeError):  # ~user/... of an unknown user: not a path, maybe a name
        p = p.expanduser()
    if is_beir_folder(p):
        return p
    name = str(name_or_path).removeprefix("beir/").strip("/")
    for root in data_dirs(data_dir):
        if is_beir_folder(root / name):
            return root / name
        # allow a unique prefix: "noveleval" finds "noveleval-2306"
        try:
            matches = [c for c in root.glob(f"{name}*") if is_beir_folder(c)] if root.is_dir() else []
        except (OSError, ValueError, RecursionError):  # a "name" that is no file name
            matches = []
        if len(matches) == 1:
            return matches[0]
    if download and name in BEIR_MD5:
        return download_beir(name, cache_dir() / "datasets")
    searched = ", ".join(str(d) for d in data_dirs(data_dir))
    raise DataError(
        f"dataset {str(name_or_path)!r} not found (searched: {searched}); pass --data-dir or set RANKDISTILL_DATA_DIR"
        + (f"; downloadable BEIR names: {', '.join(sorted(BEIR_MD5))}" if download else "")
    )


def load_dataset(
    name_or_path: str | Path, data_dir: str | Path | None = None, download: bool = True
) -> Dataset:
    """Open a dataset: a BEIR folder, a name found in the data directories, or `irds:<ir_datasets id>`."""
    if str(name_or_path).startswith("irds:"):
        return from_ir_datasets(str(name_or_path)[5:])
    path = resolve_dataset(name_or_path, data_dir, download)
    return Dataset(path, name=path.name)


def download_beir(name: str, root: Path) -> Path:
    """Download and unpack a BEIR zip with an md5 check and a progress bar."""
    import httpx

    from rankdistill.utils import progress

    root.mkdir(parents=True, exist_ok=True)
    url = BEIR_URL.format(name=name)
    zpath = root / f"{name}.zip.part"
    md5 = hashlib.md5()
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length", 0)) or None
            with open(zpath, "wb") as fh, progress(total=total, desc=f"download {name}", unit="B") as bar:
                for chunk in resp.iter_bytes(1 << 20):
                    fh.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
    except httpx.HTTPError as exc:
        zpath.unlink(missing_ok=True)
        raise RankdistillError(
            f"could not download {url}: {exc}; download it by hand and pass its folder"
        ) from exc
    if md5.hexdigest() != BEIR_MD5[name]:
        zpath.unlink(missing_ok=True)
        raise RankdistillError(
            f"checksum mismatch for {url}: md5 {md5.hexdigest()}, expected {BEIR_MD5[name]}"
        )
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(root)
    zpath.unlink()
    if not is_beir_folder(root / name):
        shutil.rmtree(root / name, ignore_errors=True)
        raise RankdistillError(f"{url} did not contain a BEIR folder named {name}")
    return root / name


#: parts of an ir_datasets id that name its split, and the BEIR split name each becomes
IRDS_SPLITS = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "test": "test"}


def irds_split(dataset_id: str) -> str:
    """The split an ir_datasets id's queries and qrels belong to: the last part of the id that names
    one (`beir/scifact/train` -> train, `msmarco-passage/dev/small` -> dev, `beir/nfcorpus/validation`
    -> dev); test when no part does (`trec-robust04`, `beir/cqadupstack/android`: evaluation sets)."""
    parts = [p.lower() for p in dataset_id.strip("/").split("/")[1:]]
    return next((IRDS_SPLITS[p] for p in reversed(parts) if p in IRDS_SPLITS), "test")


def from_ir_datasets(dataset_id: str) -> Dataset:
    """Materialise an ir_datasets id once as a BEIR folder in the cache, then open it like any other.
    Its qrels become the split the id names (`irds_split`)."""
    irds = require("ir_datasets", "datasets", "Loading ir_datasets ids")
    from rankdistill.data.jsonl import write_jsonl

    ds = irds.load(dataset_id)
    folder = cache_dir() / "irds" / dataset_id.replace("/", "__")
    split = irds_split(dataset_id)
    # a folder without this split's qrels was written by an earlier version (every qrel under test)
    if not is_beir_folder(folder) or not (folder / "qrels" / f"{split}.tsv").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "qrels").mkdir(parents=True)
        write_jsonl(
            tmp / "queries.jsonl",
            (
                {"_id": q.query_id, "text": getattr(q, "text", None) or q.default_text()}
                for q in ds.queries_iter()
            ),
        )
        with open(tmp / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            for qr in ds.qrels_iter():
                fh.write(f"{qr.query_id}\t{qr.doc_id}\t{qr.relevance}\n")
        write_jsonl(
            tmp / "corpus.jsonl",
            (
                {
                    "_id": d.doc_id,
                    "title": getattr(d, "title", "") or "",
                    "text": getattr(d, "text", None) or d.default_text(),
                }
                for d in ds.docs_iter()
            ),
        )
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return Dataset(folder, name=dataset_id)
