"""The label store: one SQLite file (WAL) of teacher labels, keyed by a content hash.

A label's key is the hash of everything that determines it: the teacher's identity and settings, the
prompt's identity (name, version, text hash), the query text and the document text (or the list of
document texts, for listwise and reasoning labels). Change any of them and the key changes, so labels of
different teachers, prompts or texts never mix, and the same label is never computed twice.

Writes go in one transaction per batch: a batch is stored whole or not at all, so a process killed at
any moment leaves only complete batches behind and the next run picks up exactly where it stopped.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.data.jsonl import write_jsonl
from rankdistill.errors import DataError, RankdistillError
from rankdistill.registry import Registry
from rankdistill.utils import stable_hash

KINDS = ("pointwise", "listwise", "reasoning")
#: labelling functions by label kind (`rankdistill label --kind` looks them up); each registers at the
#: bottom of its module. Pointwise is `label_run(teacher, queries, corpus, run, depth, store)`; the
#: other kinds are taught by an LLM and share one call:
#: ``fn(llm, store, queries, corpus, run, *, listwise={method, window, step, depth}, batch_size=...)
#: -> summary dict``. The store accepts records of every registered kind.
LABEL_KINDS = Registry(
    "label kind",
    modules=("rankdistill.labels.pointwise", "rankdistill.labels.listwise", "rankdistill.labels.reasoning"),
)
SCHEMA_VERSION = "1"
# SQLite's default limit on host parameters is 999 in old builds; stay under it.
_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS teachers (
    teacher_id TEXT PRIMARY KEY,      -- hash of the identity below
    name TEXT NOT NULL,
    identity TEXT NOT NULL,           -- JSON: everything that makes this teacher's labels what they are
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    key TEXT PRIMARY KEY,             -- LabelStore.key(teacher identity, prompt identity, query, doc(s))
    kind TEXT NOT NULL,               -- pointwise | listwise | reasoning
    teacher TEXT NOT NULL,            -- teacher name, for people
    teacher_id TEXT NOT NULL REFERENCES teachers(teacher_id),
    query_id TEXT,
    query TEXT,
    doc_ids TEXT NOT NULL,            -- JSON list of document ids (one for pointwise labels)
    value TEXT NOT NULL,              -- JSON label, e.g. {"score": 1.2, "logits": [-0.3, 0.9]}
    created_at REAL NOT NULL,         -- unix time the batch was committed
    compute_ms REAL,                  -- time spent computing this label (its share of the batch)
    doc TEXT                          -- the document text as the teacher saw it (pointwise), for training
);
CREATE INDEX IF NOT EXISTS labels_by_teacher ON labels(kind, teacher_id);
"""


@dataclass
class LabelRecord:
    """One stored label, with what it is about."""

    key: str
    kind: str
    teacher: str
    value: Any
    doc_ids: list[str] = field(default_factory=list)
    query_id: str | None = None
    query: str | None = None
    teacher_id: str = ""
    created_at: float = 0.0
    compute_ms: float | None = None
    doc: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The export row: the record, plus `doc` (document text) where stored and, for pointwise labels,
        `label`: the [false, true] logit pair where the teacher gives one, else the score."""
        row = {
            "key": self.key,
            "kind": self.kind,
            "teacher": self.teacher,
            "teacher_id": self.teacher_id,
            "query_id": self.query_id,
            "query": self.query,
            "doc_ids": list(self.doc_ids),
            "value": self.value,
            "created_at": self.created_at,
        }
        if self.doc is not None:
            row["doc"] = self.doc
        if self.kind == "pointwise" and isinstance(self.value, dict) and "score" in self.value:
            logits = self.value.get("logits")
            row["label"] = logits if isinstance(logits, list) and len(logits) == 2 else self.value["score"]
        return row


def _identity_id(identity: dict[str, Any]) -> str:
    return stable_hash(identity, 16)


def _json(text: str, path: Path, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        raise DataError(
            f"{what} is not valid JSON ({str(text)[:40]!r}); the store is damaged", path
        ) from None


class LabelStore:
    """SQLite label store. Safe to read from many processes while one writes (WAL).

    >>> store = LabelStore("labels.sqlite")
    >>> k = LabelStore.key(teacher.identity(), prompt.identity(), "what is BM25?", "BM25 is ...")
    >>> store.get_many([k])              # {} until labelled
    """

    def __init__(self, path: str | Path, *, timeout: float = 60.0):
        self.path = Path(path)
        if self.path.is_dir():
            raise DataError("is a folder; expected a label store file (SQLite)", self.path)
        # SQLite would take an empty file for a new store: one that lost its content must not be refilled
        if self.path.exists() and self.path.stat().st_size == 0:
            raise DataError(
                "is an empty file (0 bytes), not a label store; delete it to start a new store", self.path
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) around each batch.
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise DataError(f"cannot open the label store ({exc})", self.path) from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives any process crash (kill -9); only an OS crash or power cut can
            # drop the last committed batches, which the next run then recomputes.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(labels)")}
            if "doc" not in columns:  # stores written before the column existed
                self._conn.execute("ALTER TABLE labels ADD COLUMN doc TEXT")
            row = self._conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if row is None:
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta(name, value) VALUES('schema_version', ?)", (SCHEMA_VERSION,)
                )
            elif row[0] != SCHEMA_VERSION:
                raise RankdistillError(
                    f"{self.path}: label store schema version {row[0]}, this rankdistill reads version {SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise RankdistillError(f"{self.path}: not a usable SQLite label store ({exc})") from exc
        self._known_teachers: set[str] = set()

    @contextmanager
    def _sqlite(self):
        """SQLite errors as one line naming the store (a damaged file, a lock held too long)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise DataError(f"SQLite error: {exc}", self.path) from None
        except sqlite3.DatabaseError as exc:
            raise DataError(
                f"the label store is damaged ({exc}); restore a copy or move it aside to start again",
                self.path,
            ) from None

    # -- keys -------------------------------------------------------------------------------------------
    @staticmethod
    def key(
        teacher_identity: dict[str, Any],
        prompt_identity: dict[str, Any] | None,
        query_text: str,
        doc_text_or_list: str | Sequence[str],
    ) -> str:
        """The content hash a label is stored under."""
        docs = doc_text_or_list if isinstance(doc_text_or_list, str) else list(doc_text_or_list)
        return stable_hash({"t": teacher_identity, "p": prompt_identity, "q": query_text, "d": docs}, 40)

    # -- teachers ---------------------------------------------------------------------------------------
    def register_teacher(self, name: str, identity: dict[str, Any]) -> str:
        """Record a teacher's full identity once; returns the id labels refer to."""
        teacher_id = _identity_id(identity)
        if teacher_id not in self._known_teachers:
            with self._sqlite():
                self._conn.execute(
                    "INSERT OR IGNORE INTO teachers(teacher_id, name, identity, created_at) VALUES(?,?,?,?)",
                    (teacher_id, name, json.dumps(identity, sort_keys=True, default=str), time.time()),
                )
            self._known_teachers.add(teacher_id)
        return teacher_id

    def teachers(self) -> list[dict[str, Any]]:
        with self._sqlite():
            rows = self._conn.execute(
                "SELECT teacher_id, name, identity, created_at FROM teachers ORDER BY created_at"
            ).fetchall()
        return [
            {"teacher_id": t, "name": n, "identity": _json(i, self.path, f"teacher {t!r}"), "created_at": c}
            for t, n, i, c in rows
        ]

    # -- reading ----------------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Stored values of those keys that are stored (missing keys are simply absent)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, Any] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._sqlite():
                rows = self._conn.execute(
                    f"SELECT key, value FROM labels WHERE key IN ({marks})", chunk
                ).fetchall()
            for key, value in rows:
                out[key] = _json(value, self.path, f"label {key!r}")
        return out

    def has_many(self, keys: Iterable[str]) -> set[str]:
        keys = list(dict.fromkeys(keys))
        found: set[str] = set()
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._sqlite():
                found.update(
                    k for (k,) in self._conn.execute(f"SELECT key FROM labels WHERE key IN ({marks})", chunk)
                )
        return found

    def __contains__(self, key: object) -> bool:
        with self._sqlite():
            return self._conn.execute("SELECT 1 FROM labels WHERE key=?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        with self._sqlite():
            return self._conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of labels per (kind, teacher name)."""
        with self._sqlite():
            rows = self._conn.execute(
                "SELECT kind, teacher, COUNT(*) FROM labels GROUP BY kind, teacher ORDER BY kind, teacher"
            ).fetchall()
        return {(k, t): n for k, t, n in rows}

    def iter_records(self, kind: str | None = None, teacher: str | None = None) -> Iterator[LabelRecord]:
        """All records (optionally of one kind and/or teacher name or id), in insertion order."""
        sql = (
            "SELECT key, kind, teacher, teacher_id, query_id, query, doc_ids, value, created_at, compute_ms, doc "
            "FROM labels"
        )
        where, args = [], []
        if kind is not None:
            where.append("kind=?")
            args.append(kind)
        if teacher is not None:
            where.append("(teacher=? OR teacher_id=?)")
            args += [teacher, teacher]
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid"
        with self._sqlite():
            cursor = self._conn.execute(sql, args)
            while rows := cursor.fetchmany(_CHUNK):
                for key, k, t, tid, qid, q, docs, value, created, ms, doc in rows:
                    label = f"label {key!r}"
                    value, docs = _json(value, self.path, label), _json(docs, self.path, f"{label} doc_ids")
                    yield LabelRecord(key, k, t, value, docs, qid, q, tid, created, ms, doc)

    # -- writing ----------------------------------------------------------------------------------------
    def put_many(self, records: Sequence[LabelRecord]) -> int:
        """Store a batch in ONE transaction (all or nothing). Keys already stored are left as they are.
        Returns how many records were new."""
        if not records:
            return 0
        now = time.time()
        rows = []
        for r in records:
            if r.kind not in KINDS and r.kind not in LABEL_KINDS:
                raise ValueError(f"label kind {r.kind!r}; expected one of {LABEL_KINDS.names()}")
            if not r.teacher_id:
                raise ValueError(f"record {r.key}: teacher_id is empty; call register_teacher() first")
            rows.append(
                (
                    r.key,
                    r.kind,
                    r.teacher,
                    r.teacher_id,
                    r.query_id,
                    r.query,
                    json.dumps(list(r.doc_ids), ensure_ascii=False),
                    json.dumps(r.value, ensure_ascii=False),
                    now,
                    r.compute_ms,
                    r.doc,
                )
            )
        with self._sqlite():
            return self._insert(rows)

    def _insert(self, rows: list[tuple]) -> int:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            before = self._conn.total_changes
            cur.executemany(
                "INSERT INTO labels(key, kind, teacher, teacher_id, query_id, query, doc_ids, value, created_at, "
                "compute_ms, doc) VALUES(?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO NOTHING",
                rows,
            )
            inserted = self._conn.total_changes - before
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return inserted

    # -- export -----------------------------------------------------------------------------------------
    def export_jsonl(self, path: str | Path, kind: str | None = None, teacher: str | None = None) -> int:
        """Write records (one JSON object a line) for training and inspection; returns the count."""
        return write_jsonl(path, (r.to_dict() for r in self.iter_records(kind=kind, teacher=teacher)))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r}, labels={len(self)})"
