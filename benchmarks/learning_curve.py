"""Learning curves of the distillation recipes: nDCG@10 against training pairs and CPU-seconds.

Reads the results `benchmarks/distill.py` wrote (`benchmarks/results/distill_*.json`): each student's dev
history (the `RerankingEvaluator` run every `eval_steps` on judged training-split queries that no phase
trained on) and its final test nDCG@10, and draws one line per recipe, so the next person sees which
recipe buys quality fastest. Nothing is trained here; rerun after new distill runs.

    .venv/bin/python benchmarks/learning_curve.py benchmarks/results/distill_nfcorpus_hybrid.json ...

Writes benchmarks/results/learning_curve.json and learning_curve.png (x: training pairs; second panel:
CPU-seconds of training, dev evaluations included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "results"


def curve(student: dict) -> list[dict]:
    """(training pairs, CPU-seconds, dev nDCG@10) of each dev evaluation. Each phase's trainer counts its
    steps from zero, so a step lower than the previous one starts a new phase."""
    history = student.get("dev_history") or []
    batch = int(student.get("batch_size", 16))
    cpu0 = float(student.get("train_cpu_start", 0.0))
    points, offset, last = [], 0, 0
    ends = list(student.get("train_steps") or [])
    phase = 0
    for h in history:
        if h["step"] < last and phase < len(ends):
            offset += ends[phase]
            phase += 1
        last = h["step"]
        points.append(
            {
                "pairs": (offset + h["step"]) * batch,
                "cpu_s": round(h["process_cpu_s"] - cpu0, 1) if "process_cpu_s" in h else None,
                "dev_nDCG@10": round(h["dev_nDCG@10"], 4),
            }
        )
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path)
    args = ap.parse_args()
    lines = []
    for path in args.results:
        res = json.loads(path.read_text())
        for name, s in res.get("students", {}).items():
            lines.append(
                {
                    "dataset": res["dataset"],
                    "recipe": name,
                    "result": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
                    "dev": curve(s),
                    "test": {
                        "pairs": s.get("train_pairs"),
                        "cpu_s": s.get("train_cpu_seconds"),
                        "nDCG@10": s["nDCG@10"],
                    },
                    "bm25_test": res["bm25"]["nDCG@10"],
                    "teacher_test": res["teacher"]["nDCG@10"],
                    "bm25_dev": (res.get("dev") or {}).get("bm25", {}).get("nDCG@10"),
                }
            )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "learning_curve.json").write_text(json.dumps(lines, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({line["dataset"] for line in lines})
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.6 * len(datasets)), squeeze=False)
    for row, ds in zip(axes, datasets, strict=True):
        for line in (x for x in lines if x["dataset"] == ds):
            dev = line["dev"]
            for ax, key in zip(row, ("pairs", "cpu_s"), strict=True):
                xs = [p[key] for p in dev if p[key] is not None]
                ys = [p["dev_nDCG@10"] for p in dev if p[key] is not None]
                if xs:
                    ax.plot(xs, ys, marker="o", label=f"{line['recipe']} (dev)")
                if line["test"][key] is not None:
                    ax.scatter([line["test"][key]], [line["test"]["nDCG@10"]], marker="*", s=120)
        first = next(x for x in lines if x["dataset"] == ds)
        for ax, xlabel in zip(row, ("training pairs", "CPU-seconds of training"), strict=True):
            ax.axhline(first["bm25_test"], color="grey", ls="--", lw=1, label="BM25 (test)")
            ax.axhline(first["teacher_test"], color="black", ls=":", lw=1, label="teacher (test)")
            if first["bm25_dev"] is not None:
                ax.axhline(first["bm25_dev"], color="grey", ls="-.", lw=1, label="BM25 (dev)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{ds} nDCG@10")
        row[0].legend(fontsize=7, loc="lower right")
        row[1].set_title("stars: test nDCG@10 at the end of training", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "learning_curve.png", dpi=110)
    print(json.dumps([{k: v for k, v in x.items() if k != "dev"} for x in lines], indent=1))


if __name__ == "__main__":
    main()
