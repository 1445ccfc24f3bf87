#!/bin/bash
# Session 3, second GPU call: MarginMSE (the best loss of call 1) at more pairs, lr 1e-4, max length 96, and a
# 2-layer student started from the trained 6-layer one (its layers 1 and 6).
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/exp/gpu}; mkdir -p $OUT
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
all=train,sentence0,sentence1,sentence2,title
S="python3 benchmarks/explore/gpu_sweep.py --kinds $all --loss margin"
L=${LIMIT:-480}
timeout $L $S --name margin200k_b64 --pairs 200000 --qbatch 8 --evals 5 > $OUT/margin200k_b64.log 2>&1 &
timeout $L $S --name margin32k --pairs 32000 --evals 2 > $OUT/margin32k.log 2>&1 &
timeout $L $S --name margin48k_lr1e4 --pairs 48000 --lr 1e-4 --evals 2 > $OUT/margin48k_lr1e4.log 2>&1 &
timeout $L $S --name margin48k_len96 --pairs 48000 --maxlen 96 --evals 2 > $OUT/margin48k_len96.log 2>&1 &
timeout $L $S --name margin48k_g16 --pairs 48000 --group 16 --evals 2 > $OUT/margin48k_g16.log 2>&1 &
(timeout $L $S --name margin48k_6l --pairs 48000 --evals 1 --save /tmp/s6 > $OUT/two_from_six.log 2>&1 &&
 timeout 200 $S --name l05_from6l_16k --pairs 16000 --layers 0,5 --init_from /tmp/s6 --evals 2 >> $OUT/two_from_six.log 2>&1) &
wait
grep -h '"pairs"' $OUT/*.log
