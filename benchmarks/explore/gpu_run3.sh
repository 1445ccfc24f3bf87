#!/bin/bash
# Session 3, third GPU call: what makes a CPU training step cheaper (max length 64 / 96, frozen embeddings)
# at MarginMSE's 48k pairs, and the 2-layer (layers 1 and 6) student with MarginMSE at 96k pairs.
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/exp/gpu}; mkdir -p $OUT
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
all=train,sentence0,sentence1,sentence2,title
S="python3 benchmarks/explore/gpu_sweep.py --kinds $all --loss margin --evals 2"
L=${LIMIT:-300}
timeout $L $S --name margin48k_len64 --pairs 48000 --maxlen 64 > $OUT/margin48k_len64.log 2>&1 &
timeout $L $S --name margin48k_len96 --pairs 48000 --maxlen 96 > $OUT/margin48k_len96.log 2>&1 &
timeout $L $S --name margin48k_frozen_emb --pairs 48000 --freeze_emb > $OUT/margin48k_frozen_emb.log 2>&1 &
timeout $L $S --name margin48k_p1p2 --pairs 48000 --kinds train,sentence0 > $OUT/margin48k_p1p2.log 2>&1 &
timeout $L $S --name l05_margin96k --pairs 96000 --layers 0,5 > $OUT/l05_margin96k.log 2>&1 &
wait
grep -h '"pairs"' $OUT/*.log
