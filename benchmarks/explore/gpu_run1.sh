#!/bin/bash
# Session 3, first GPU call: every recipe of the sweep at once on one GPU (see gpu_sweep.py); logs to $OUT.
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/exp/gpu}; mkdir -p $OUT
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
all=train,sentence0,sentence1,sentence2,title
run() { n=$1; shift; timeout ${LIMIT:-520} python3 benchmarks/explore/gpu_sweep.py --name $n "$@" > $OUT/$n.log 2>&1 & }
run base16k --pairs 16000
run base48k --pairs 48000 --kinds $all
run base128k --pairs 128000 --kinds $all --evals 8
run list30_48k --pairs 48000 --kinds $all --group 30 --qbatch 1
run margin48k --pairs 48000 --kinds $all --loss margin
run ranknet48k --pairs 48000 --kinds $all --loss ranknet
run len64_48k --pairs 48000 --kinds $all --maxlen 64
run zeroq48k --pairs 48000 --kinds $all --init zeroq
run T03_48k --pairs 48000 --kinds $all --T 0.3
run lr1e4_48k --pairs 48000 --kinds $all --lr 1e-4
run l05_48k --pairs 48000 --kinds $all --layers 0,5
run l01_48k --pairs 48000 --kinds $all --layers 0,1
wait
tail -n 30 $OUT/*.log
