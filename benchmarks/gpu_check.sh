#!/usr/bin/env bash
# GPU check (benchmarks/gpu_check.py): the quick-start student trained with the library's own trainer on
# one CUDA GPU, scored there with Reranker; pairs/s and nDCG@10 (beside BM25 on the same candidates),
# with the GPU's name and the torch and CUDA versions, in benchmarks/results/gpu_check.json. Under 10
# minutes on one GPU, no network: scifact from $RANKDISTILL_DATA_DIR (else ../shared/data), MiniLM from
# its pip package.
#
#   benchmarks/gpu_check.sh                       # from the repo root, after `make install`
#   benchmarks/gpu_check.sh --allow-cpu --tiny    # the same code path on a CPU in about a minute
#
# Python: $PYTHON if set, else .venv/bin/python, else python3 (with src/ on PYTHONPATH, so an image that
# has the dependencies but not this package installed works too). Stops, saying why, when torch sees no
# CUDA device (unless --allow-cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
echo "gpu_check: python $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
  echo "gpu_check: no nvidia-smi on PATH"
fi
exec timeout "${GPU_CHECK_TIMEOUT:-590}" "$PY" benchmarks/gpu_check.py "$@"
