"""The README's Python examples run as written (each block marked `<!-- example: NAME -->`)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def examples() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    return dict(re.findall(r"<!-- example: (\S+) -->\s*```python\n(.*?)```", text, flags=re.S))


def test_the_readme_has_its_examples():
    assert "distill" in examples()


@pytest.mark.slow
@pytest.mark.data
def test_distill_example(tmp_path: Path, data_dir: Path, minilm_dir: Path) -> None:
    code = examples()["distill"]
    env = {
        "RANKDISTILL_DATA_DIR": str(data_dir),
        "RANKDISTILL_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
    }
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr[-3000:]
    bm25, teacher, student = re.search(r"BM25 (\S+) teacher (\S+) student (\S+)", res.stdout).groups()
    assert 0.3 < float(bm25) <= 1 and 0 <= float(teacher) <= 1 and 0 <= float(student) <= 1
    doc_id, score = res.stdout.strip().splitlines()[-1].split()
    # a one-minute 1-layer student is not a good ranker: the example shows the API, the test that it runs
    assert doc_id in ("0", "1") and math.isfinite(float(score))
    assert (tmp_path / "runs" / "smoke" / "report.html").is_file()
