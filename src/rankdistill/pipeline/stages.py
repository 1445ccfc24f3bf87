"""The stages of `rankdistill run`: data → bm25 → queries → labels → train → evaluate → report.

Each stage reads the outputs of the stages named in its `after`, writes its own under its folder, and
calls the layer that does the work (no stage re-implements one):

    data/       dataset.json, eval_queries.jsonl, train_queries.jsonl        rankdistill.data
    bm25/       eval_candidates.trec (top bm25.k), train_candidates.trec       rankdistill.retrieval
    queries/    a BEIR folder of synthetic queries with BM25 candidates        rankdistill.teachers.querygen
    labels/     train_queries.jsonl, synthetic.jsonl: (query, document, label) rankdistill.labels (+ ray)
    train/      student/ (the trained model folder), train_config.json        rankdistill.training
    evaluate/   metrics.json, runs/{bm25,teacher,student}.trec                 rankdistill.evaluation, .inference
    report/     report.md, report.html, figures/ (also copied to the run folder) rankdistill.report

Teacher labels live in `<run_dir>/labels.sqlite`, outside any stage folder: keyed by content, they stay
valid whatever changes, so a rerun (or the evaluate stage's teacher run) reuses every label computed.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

from rankdistill.data.jsonl import iter_jsonl, write_jsonl
from rankdistill.data.types import Qrels, Queries, Run
from rankdistill.errors import DataError, RankdistillError
from rankdistill.pipeline.config import PipelineConfig
from rankdistill.pipeline.runner import Stage, StageContext, input_fingerprint, read_manifest

log = logging.getLogger(__name__)

LABEL_STORE = "labels.sqlite"
STAGE_NAMES = ("data", "bm25", "queries", "labels", "train", "evaluate", "report")


# -- shared objects (loaded once per process, reused by later stages) ---------------------------------


def _dataset(ctx: StageContext):
    if "dataset" not in ctx.shared:
        from rankdistill.data import load_dataset

        cfg: PipelineConfig = ctx.config
        ctx.shared["dataset"] = load_dataset(cfg.dataset.name, data_dir=cfg.dataset.data_dir, download=True)
    return ctx.shared["dataset"]


def _bm25(ctx: StageContext):
    if "bm25" not in ctx.shared:
        from rankdistill.retrieval import BM25Retriever

        cfg: PipelineConfig = ctx.config
        ctx.shared["bm25"] = BM25Retriever.from_corpus(_dataset(ctx).corpus, k1=cfg.bm25.k1, b=cfg.bm25.b)
    return ctx.shared["bm25"]


def _teacher(ctx: StageContext):
    if "teacher" not in ctx.shared:
        from rankdistill.teachers import load_teacher

        ctx.shared["teacher"] = load_teacher(ctx.config.labels.teacher)
    return ctx.shared["teacher"]


def _read_queries(path: Path) -> Queries:
    return Queries({str(o["_id"]): o["text"] for _, o in iter_jsonl(path, required=("_id", "text"))})


def _write_queries(path: Path, queries: Queries) -> int:
    return write_jsonl(path, ({"_id": q, "text": t} for q, t in queries.items()))


def _sample(ids: list[str], n: int | None, seed: int) -> list[str]:
    if n is None or len(ids) <= n:
        return ids
    keep = set(random.Random(seed).sample(ids, n))
    return [i for i in ids if i in keep]  # file order, whatever the sample


# -- data ---------------------------------------------------------------------------------------------


def _dataset_fingerprint(cfg: PipelineConfig) -> dict[str, Any]:
    from rankdistill.data import resolve_dataset

    try:
        return input_fingerprint(resolve_dataset(cfg.dataset.name, cfg.dataset.data_dir, download=False))
    except DataError:  # not downloaded yet: the data stage downloads it (and reruns once it is local)
        return {"dataset": cfg.dataset.name, "local": False}


def run_data(ctx: StageContext) -> dict[str, Any]:
    """Open the dataset; write the evaluation queries and the training queries (texts only)."""
    cfg: PipelineConfig = ctx.config
    ds = _dataset(ctx)
    from rankdistill.retrieval import corpus_fingerprint

    eval_q = ds.split_queries(cfg.dataset.eval_split)
    eval_q = eval_q.subset(_sample(list(eval_q), cfg.dataset.max_eval_queries, cfg.seed))
    _write_queries(ctx.out / "eval_queries.jsonl", eval_q)
    n_train = 0
    if cfg.train_queries.split is not None:
        split = cfg.train_queries.split
        if split not in ds.splits:
            raise DataError(
                f"train_queries.split: no split {split!r} in {ds.name}; available: {', '.join(ds.splits)}",
                ds.path / "qrels",
            )
        # (the config refuses a training split equal to the evaluation split)
        train_q = ds.split_queries(split)
        ids = [q for q in train_q if q not in eval_q]
        train_q = train_q.subset(_sample(ids, cfg.train_queries.max_queries, cfg.seed))
        n_train = _write_queries(ctx.out / "train_queries.jsonl", train_q)
    info = {
        "name": ds.name,
        "path": str(ds.path),
        "documents": len(ds.corpus),
        "corpus_fingerprint": corpus_fingerprint(ds.corpus),
        "eval_split": cfg.dataset.eval_split,
        "eval_queries": len(eval_q),
        "train_queries": n_train,
    }
    (ctx.out / "dataset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


# -- bm25 ---------------------------------------------------------------------------------------------


def run_bm25(ctx: StageContext) -> dict[str, Any]:
    """BM25 candidates: top bm25.k of each evaluation query, top labels.depth of each training query."""
    from rankdistill.data import write_run

    cfg: PipelineConfig = ctx.config
    data = ctx.stage_dir("data")
    bm25 = _bm25(ctx)
    t0 = time.perf_counter()
    eval_run = bm25.retrieve(_read_queries(data / "eval_queries.jsonl"), k=cfg.bm25.k, desc="BM25 (eval)")
    seconds = time.perf_counter() - t0
    write_run(eval_run, ctx.out / "eval_candidates.trec", tag="bm25")
    summary = {
        "eval_queries": len(eval_run),
        "eval_pairs": sum(len(v) for _, v in eval_run.items()),
        "eval_seconds": round(seconds, 3),
    }
    if (data / "train_queries.jsonl").exists():
        train_run = bm25.retrieve(
            _read_queries(data / "train_queries.jsonl"), k=cfg.labels.depth, desc="BM25 (train)"
        )
        write_run(train_run, ctx.out / "train_candidates.trec", tag="bm25")
        summary["train_queries"] = len(train_run)
    return summary


# -- synthetic queries --------------------------------------------------------------------------------


def run_queries(ctx: StageContext) -> dict[str, Any]:
    """InPars: queries written by the LLM (or cut from documents) for sampled documents, with BM25 candidates."""
    cfg: PipelineConfig = ctx.config
    if cfg.queries.method == "none":
        (ctx.out / "none").write_text("queries.method is none: no synthetic queries\n")
        return {"queries": 0}
    from rankdistill.data.beir import corpus_path
    from rankdistill.teachers.querygen import generate_synthetic_queries
    from rankdistill.teachers.querygen.pipeline import LLM_METHODS

    ds = _dataset(ctx)
    qcfg = cfg.queries.querygen_config(cfg.seed)
    llm = None
    if qcfg.method in LLM_METHODS:
        from rankdistill.llm import load_llm

        llm = load_llm(cfg.queries.llm)
    try:
        result = generate_synthetic_queries(
            ds.corpus, qcfg, llm=llm, out_dir=ctx.out, retriever=_bm25(ctx), corpus_file=corpus_path(ds.path)
        )
    finally:
        if llm is not None:
            llm.close()
    if not result.queries:
        raise RankdistillError(f"no synthetic query survived cleaning and filtering: {result.stats}")
    stats = result.stats
    return {
        k: stats[k] for k in ("queries", "raw_queries", "sampled_documents", "seconds_total") if k in stats
    }


# -- labels -------------------------------------------------------------------------------------------


def _query_sets(ctx: StageContext) -> list[tuple[str, Queries, Run]]:
    """(phase name, queries, BM25 candidates) of each training query set that exists."""
    from rankdistill.data import read_run

    sets = []
    data, bm25 = ctx.stage_dir("data"), ctx.stage_dir("bm25")
    if (data / "train_queries.jsonl").exists():
        sets.append(
            (
                "train_queries",
                _read_queries(data / "train_queries.jsonl"),
                read_run(bm25 / "train_candidates.trec"),
            )
        )
    synth = ctx.stage_dir("queries")
    if (synth / "queries.jsonl").exists():
        sets.append(
            ("synthetic", _read_queries(synth / "queries.jsonl"), read_run(synth / "runs" / "bm25.trec"))
        )
    return sets


def label_with_backend(ctx: StageContext, candidates: list) -> list:
    """Teacher labels of candidates through the run's label store, locally or on Ray (`labels.backend`)."""
    from rankdistill.labels import LabelStore, label_candidates

    cfg: PipelineConfig = ctx.config
    with LabelStore(ctx.run_dir / LABEL_STORE) as store:
        if cfg.labels.backend == "ray":
            from rankdistill.labels.ray_backend import RayOptions, label_candidates_ray

            r = cfg.labels.ray
            options = RayOptions(
                address=r.address,
                num_actors=r.num_actors,
                num_cpus_per_actor=r.num_cpus_per_actor,
                num_gpus_per_actor=r.num_gpus_per_actor,
            )
            return label_candidates_ray(
                cfg.labels.teacher,
                candidates,
                store,
                options=options,
                batch_size=cfg.labels.batch_size,
                teacher=_teacher(ctx),
            )
        return label_candidates(_teacher(ctx), candidates, store, batch_size=cfg.labels.batch_size)


def _targets(candidates: list, labels: list, target: str) -> list[Any]:
    """Training targets: per-query min-max of the teacher score (in [0, 1], for soft BCE), the raw score,
    or the [false, true] logit pair (InRanker's MSE on logits)."""
    if target == "score":
        return [float(lab.score) for lab in labels]
    if target == "logits":
        bad = next(
            (c for c, lab in zip(candidates, labels, strict=True) if not lab.logits or len(lab.logits) != 2),
            None,
        )
        if bad is not None:
            raise RankdistillError(
                f"labels.target logits needs a teacher with [false, true] logits (e.g. truefalse:<llm>); the label of "
                f"query {bad.query_id!r}, document {bad.doc_id!r} has none. Use labels.target: minmax"
            )
        return [[float(x) for x in lab.logits] for lab in labels]
    by_query: dict[str, list[int]] = {}
    for i, c in enumerate(candidates):
        by_query.setdefault(c.query_id, []).append(i)
    from rankdistill.evaluation.fusion import minmax

    out: list[Any] = [0.0] * len(candidates)
    for idx in by_query.values():
        scaled = minmax({i: labels[i].score for i in idx})
        for i in idx:
            out[i] = scaled[i]
    return out


def _sample_rows(
    candidates: list, labels: list, per_query: int | None, top: int, seed: int
) -> set[int] | None:
    """Indices of the candidates `pick_rows` keeps for each query (as `pairs_from_teacher_run` does)."""
    if per_query is None:
        return None
    from rankdistill.training.data import pick_rows

    rng = random.Random(seed)
    by_query: dict[str, dict[str, int]] = {}
    for i, c in enumerate(candidates):
        by_query.setdefault(c.query_id, {})[c.doc_id] = i
    keep: set[int] = set()
    for index in by_query.values():
        picked = pick_rows({d: labels[i].score for d, i in index.items()}, per_query, top, rng)
        keep.update(index[d] for d in picked)
    return keep


def run_labels(ctx: StageContext) -> dict[str, Any]:
    """Teacher labels for the top labels.depth BM25 candidates of every training query."""
    from rankdistill.teachers import run_candidates

    cfg: PipelineConfig = ctx.config
    corpus = _dataset(ctx).corpus
    summary: dict[str, Any] = {"teacher": _teacher(ctx).name, "backend": cfg.labels.backend}
    for phase, queries, run in _query_sets(ctx):
        candidates = run_candidates(queries, corpus, run, cfg.labels.depth)
        t0 = time.perf_counter()
        labels = label_with_backend(ctx, candidates)
        targets = _targets(candidates, labels, cfg.labels.target)
        keep = _sample_rows(candidates, labels, cfg.labels.per_query, cfg.labels.top, cfg.seed)
        rows = (
            {
                "query_id": c.query_id,
                "query": c.query,
                "doc_id": c.doc_id,
                "document": c.doc,
                "label": t,
                "teacher_score": float(lab.score),
            }
            for i, (c, lab, t) in enumerate(zip(candidates, labels, targets, strict=True))
            if keep is None or i in keep
        )
        n = write_jsonl(ctx.out / f"{phase}.jsonl", rows)
        summary[phase] = {
            "queries": len({c.query_id for c in candidates}),
            "pairs": n,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    return summary


# -- train --------------------------------------------------------------------------------------------


def run_train(ctx: StageContext) -> dict[str, Any]:
    """Train the student on each labelled query set in turn (InRanker: real queries, then synthetic)."""
    from rankdistill.training.run import train_from_config

    cfg: PipelineConfig = ctx.config
    labels = ctx.stage_dir("labels")
    phases = [
        {"name": phase, "data": {"jsonl": str(labels / f"{phase}.jsonl"), "max_rows": cfg.train.max_rows}}
        for phase in ("train_queries", "synthetic")
        if (labels / f"{phase}.jsonl").exists()
    ]
    if not phases:
        raise RankdistillError("no labelled training queries: the labels stage wrote no phase file")
    work = ctx.out / "work"
    tcfg = cfg.train.train_config(work, cfg.seed, phases, cfg.dataset.data_dir)
    (ctx.out / "train_config.json").write_text(json.dumps(tcfg.model_dump(mode="json"), indent=2) + "\n")
    t0 = time.perf_counter()
    if cfg.train.launch:
        final = _launch_training(cfg.train.launch, tcfg, ctx.out / "train_config.yaml")
    else:
        final = Path(train_from_config(tcfg))
    seconds = time.perf_counter() - t0
    student = ctx.out / "student"
    if student.exists():
        shutil.rmtree(student)
    shutil.move(str(final), student)
    # checkpoints (optimizer states, ~3x the model) were only for resuming this stage
    shutil.rmtree(work, ignore_errors=True)
    return {
        "phases": [p["name"] for p in phases],
        "seconds": round(seconds, 3),
        "parameters": count_parameters(student),
    }


def _launch_training(launch: str, tcfg, config_path: Path) -> Path:
    """`<launcher> rankdistill train CONFIG` in a subprocess (one process per GPU under accelerate or
    torchrun; the Hugging Face Trainer underneath handles DDP); returns the final student folder."""
    import shlex
    import subprocess
    import sys

    import yaml

    config_path.write_text(yaml.safe_dump(tcfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    script = shutil.which("rankdistill") or str(Path(sys.executable).with_name("rankdistill"))
    launcher = shlex.split(launch)
    # a launcher installed in this environment (accelerate, torchrun) works without an activated venv
    beside = Path(sys.executable).with_name(launcher[0])
    if shutil.which(launcher[0]) is None and beside.exists():
        launcher[0] = str(beside)
    cmd = [*launcher, script, "train", str(config_path)]
    log.info("training with: %s", " ".join(cmd))
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise RankdistillError(
            f"training under {launch!r} exited with status {proc.returncode}: {' '.join(cmd)}"
        )
    final = Path(tcfg.output_dir) / "final"
    if not final.is_dir():
        raise RankdistillError(f"training under {launch!r} finished without writing {final}")
    return final


def count_parameters(path: str | Path) -> int | None:
    """Parameters of a model folder or file, read from the safetensors / GGUF headers (no weights loaded)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.safetensors")) if path.is_dir() else []
    total = 0
    for f in files:
        if f.suffix == ".safetensors":
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n))
            for name, info in header.items():
                if name != "__metadata__":
                    count = 1
                    for dim in info["shape"]:
                        count *= dim
                    total += count
        elif f.suffix == ".gguf":
            try:
                from gguf import GGUFReader
            except ImportError:
                return None
            total += sum(int(t.n_elements) for t in GGUFReader(str(f)).tensors)
    return total or None


def teacher_parameters(teacher: Any) -> int | None:
    """Parameters of every model a teacher runs (ensemble members summed; BM25 counts 0)."""
    members = getattr(teacher, "members", None)
    if members is not None:
        counts = [teacher_parameters(m) for m in members]
        return None if any(c is None for c in counts) else sum(counts)
    if type(teacher).__name__ == "FirstStageTeacher":
        return 0
    path = getattr(teacher, "model_path", None)
    llm = getattr(teacher, "llm", None)
    if path is None and llm is not None:
        path = getattr(llm, "path", None)
    return count_parameters(path) if path is not None else None


# -- evaluate -----------------------------------------------------------------------------------------


def _timed_bm25(bm25, queries: Queries, run: Run) -> float:
    """BM25's pairs per second scoring exactly the candidates (same work unit as the rerankers)."""
    pairs = 0
    t0 = time.perf_counter()
    for qid in run.query_ids:
        ids = list(run[qid])
        bm25.score(queries[qid], ids)
        pairs += len(ids)
    return pairs / max(time.perf_counter() - t0, 1e-9)


def _with_tail(reranked: Run, first_stage: Run) -> Run:
    """The reranked documents of each query, then the first stage's documents it did not rerank, in
    first-stage order below them (a reranker of the top 30 of a top-100 keeps the other 70)."""
    out = Run({}, name=reranked.name)
    for qid in first_stage.query_ids:
        scores = dict(reranked.scores.get(qid, {}))
        floor = min(scores.values(), default=0.0)
        tail = [d for d, _ in first_stage.ranked(qid) if d not in scores]
        for i, d in enumerate(tail, 1):
            scores[d] = floor - i
        out.scores[qid] = scores
    return out


def run_evaluate(ctx: StageContext) -> dict[str, Any]:
    """BM25, the teacher and the student on the same candidates; metrics.json for the report."""
    from rankdistill.data import read_run, write_run
    from rankdistill.evaluation import evaluate, fuse_minmax
    from rankdistill.inference.reranker import Reranker
    from rankdistill.teachers import direct_scorer, run_candidates
    from rankdistill.teachers.base import labels_to_run

    cfg: PipelineConfig = ctx.config
    ev = cfg.evaluate
    ds = _dataset(ctx)
    queries = _read_queries(ctx.stage_dir("data") / "eval_queries.jsonl")
    # only the evaluation queries count (max_eval_queries may have sampled a subset of the split)
    qrels = ds.qrels(cfg.dataset.eval_split)
    qrels = Qrels({q: j for q, j in qrels.items() if q in queries}, name=qrels.name)
    candidates_run = read_run(ctx.stage_dir("bm25") / "eval_candidates.trec", name="bm25")
    candidates = run_candidates(queries, ds.corpus, candidates_run, depth=ev.depth)
    (ctx.out / "runs").mkdir(exist_ok=True)
    systems = []

    def add(name: str, role: str, run: Run, pps: float | None, params: int | None, description: str) -> None:
        if role != "baseline":
            run = _with_tail(run, candidates_run)
        res = evaluate(run, qrels, ev.measures, per_query=True)
        write_run(run, ctx.out / "runs" / f"{role}.trec", tag=role)
        systems.append(
            {
                "name": name,
                "role": role,
                "metrics": {m: res[m] for m in ev.measures},
                "per_query": res["per_query"],
                "pairs_per_second": pps,
                "parameters": params,
                "description": description,
            }
        )
        log.info("%s: %s", name, {m: round(res[m], 4) for m in ev.measures})

    add(
        "BM25",
        "baseline",
        candidates_run,
        _timed_bm25(_bm25(ctx), queries, candidates_run),
        0,
        f"bm25s (Lucene variant, k1={cfg.bm25.k1}, b={cfg.bm25.b}); its top {cfg.bm25.k} are every system's candidates",
    )

    if ev.teacher:
        teacher = _teacher(ctx)
        labels = label_with_backend(ctx, candidates)
        # throughput on a sample of whole queries, computed directly (the store would return cached labels)
        sample, seen = [], set()
        for c in candidates:
            if len(sample) >= ev.throughput_pairs and c.query_id not in seen:
                break
            seen.add(c.query_id)
            sample.append(c)
        t0 = time.perf_counter()
        teacher.label_candidates(sample, direct_scorer(show_progress=False))
        pps = len(sample) / max(time.perf_counter() - t0, 1e-9)
        spec = cfg.labels.teacher if isinstance(cfg.labels.teacher, str) else json.dumps(cfg.labels.teacher)
        add(
            f"teacher: {spec if len(spec) <= 40 else teacher.name}",
            "teacher",
            labels_to_run(labels, candidates, name="teacher"),
            pps,
            teacher_parameters(teacher),
            f"{spec}; throughput measured with its caches warm (e.g. document embeddings)",
        )

    student_dir = ctx.stage_dir("train") / "student"
    reranker = Reranker.load(student_dir, backend="torch", batch_size=ev.batch_size, threads=cfg.threads)
    pairs = [(c.query, c.doc) for c in candidates]
    reranker.score(pairs[: min(len(pairs), 64)])  # warm-up: first calls pay for allocation
    t0 = time.perf_counter()
    scores = reranker.score(pairs)
    pps = len(pairs) / max(time.perf_counter() - t0, 1e-9)
    student_run = Run({}, name="student")
    for c, s in zip(candidates, scores, strict=True):
        student_run.scores.setdefault(c.query_id, {})[c.doc_id] = float(s)
    info = reranker.info()
    add(
        f"student: {Path(str(cfg.train.student.get('base', 'student'))).name}",
        "student",
        student_run,
        pps,
        count_parameters(student_dir),
        f"backend {info.get('backend')}, dtype {info.get('dtype')}, "
        f"{info.get('threads')} threads, batch {ev.batch_size}, max length {info.get('max_length')}",
    )
    if ev.fuse_student is not None:
        w = ev.fuse_student
        # BM25's scores of the same (reranked) candidates
        reranked_bm25 = Run(
            {q: {d: candidates_run[q][d] for d in student_run[q]} for q in student_run.query_ids}
        )
        fused = fuse_minmax([student_run, reranked_bm25], [w, 1 - w], name="student+bm25")
        add(
            f"student + BM25 (min-max, {w:g} / {1 - w:g})",
            "other",
            fused,
            pps,
            count_parameters(student_dir),
            "the student's and BM25's scores of the reranked candidates, each min-max scaled per query, "
            "weighted and summed (the teacher's fusion, with the student in place of the bi-encoder)",
        )

    where = f"BM25 top-{cfg.bm25.k}" + (
        f", top {ev.depth} reranked" if ev.depth and ev.depth < cfg.bm25.k else ""
    )
    results = {
        "dataset": ds.name,
        "split": cfg.dataset.eval_split,
        "queries": len(queries),
        "candidates": where,
        "measures": ev.measures,
        "systems": systems,
    }
    from rankdistill.report import parse_results

    parse_results(results)  # the report stage must be able to read it
    (ctx.out / "metrics.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return {s["role"]: {**s["metrics"], "pairs_per_second": s["pairs_per_second"]} for s in systems}


# -- report -------------------------------------------------------------------------------------------


def run_report(ctx: StageContext) -> dict[str, Any]:
    import yaml

    from rankdistill.report import load_results, write_report

    cfg: PipelineConfig = ctx.config
    results = load_results(ctx.stage_dir("evaluate") / "metrics.json")
    stages = []
    for name in STAGE_NAMES[:-1]:
        manifest = read_manifest(ctx.run_dir / name)
        if manifest:
            stages.append({"name": name, "status": "done", "seconds": manifest.get("seconds")})
    config_text = yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False)
    files = write_report(results, ctx.out, config=config_text, title=cfg.report.title, stages=stages)
    return {
        "markdown": files.markdown.name,
        "html": files.html.name,
        "figures": [p.name for p in files.figures],
    }


def publish_report(stage_dir: Path, run_dir: Path) -> None:
    """Copy report.md, report.html and figures/ to the run folder, where a user looks first."""
    for name in ("report.md", "report.html"):
        shutil.copy2(stage_dir / name, run_dir / name)
    if (run_dir / "figures").exists():
        shutil.rmtree(run_dir / "figures")
    shutil.copytree(stage_dir / "figures", run_dir / "figures")


# -- the pipeline -------------------------------------------------------------------------------------


def _dump(model) -> Any:
    return model.model_dump(mode="json") if model is not None else None


def build_stages() -> list[Stage]:
    """The stages with what each one's outputs depend on (what a rerun compares)."""
    return [
        Stage(
            "data",
            run_data,
            lambda c: {"dataset": _dump(c.dataset), "train_queries": _dump(c.train_queries), "seed": c.seed},
            external=_dataset_fingerprint,
            description="open the dataset, pick evaluation and training queries",
        ),
        Stage(
            "bm25",
            run_bm25,
            lambda c: {"bm25": _dump(c.bm25), "depth": c.labels.depth},
            after=("data",),
            external=_dataset_fingerprint,
            description="BM25 candidates",
        ),
        Stage(
            "queries",
            run_queries,
            lambda c: {"queries": _dump(c.queries), "bm25": _dump(c.bm25), "seed": c.seed},
            external=_dataset_fingerprint,
            description="synthetic queries (InPars)",
        ),  # reads only the corpus
        # the backend (local or Ray) and its sizing do not change a label, so they are not settings here
        Stage(
            "labels",
            run_labels,
            lambda c: {
                "teacher": c.labels.teacher,
                "depth": c.labels.depth,
                "target": c.labels.target,
                "batch_size": c.labels.batch_size,
                "per_query": c.labels.per_query,
                "top": c.labels.top,
                "seed": c.seed,
            },
            after=("data", "bm25", "queries"),
            external=_dataset_fingerprint,
            description="teacher labels",
        ),
        Stage(
            "train",
            run_train,
            lambda c: {"train": _dump(c.train), "seed": c.seed},
            after=("labels",),
            description="train the student",
        ),
        Stage(
            "evaluate",
            run_evaluate,
            lambda c: {
                "evaluate": _dump(c.evaluate),
                "teacher": c.labels.teacher,
                "batch_size": c.labels.batch_size,
                "threads": c.threads,
            },
            after=("data", "bm25", "train"),
            external=_dataset_fingerprint,
            description="BM25, teacher and student on the same candidates",
        ),
        Stage(
            "report",
            run_report,
            lambda c: c.model_dump(mode="json", exclude_none=True),
            after=("evaluate",),
            publish=publish_report,
            description="report.md and report.html",
        ),
    ]


def build_pipeline(config: PipelineConfig, run_dir: str | Path | None = None):
    from rankdistill.pipeline.runner import Pipeline
    from rankdistill.version import __version__

    return Pipeline(build_stages(), config, run_dir or config.resolved_run_dir, version=__version__)


def run_pipeline(
    config: PipelineConfig,
    *,
    run_dir: str | Path | None = None,
    from_stage: str | None = None,
    until: str | None = None,
    on_event=None,
):
    """Run (or resume) the whole pipeline; returns the StageResults. Writes the config used to the run folder."""
    import yaml

    from rankdistill.utils import set_seed

    set_seed(config.seed)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    pipeline = build_pipeline(config, run_dir)
    pipeline.run_dir.mkdir(parents=True, exist_ok=True)
    (pipeline.run_dir / "config.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False), encoding="utf-8"
    )
    try:
        return pipeline.run(from_stage=from_stage, until=until, on_event=on_event)
    finally:
        teacher = pipeline.shared.get("teacher")
        if teacher is not None:
            teacher.close()
