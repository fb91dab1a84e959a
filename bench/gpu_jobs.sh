#!/bin/bash
# The bench.reproduce jobs a GPU is for, side by side on one GPU: the 'long' group (baseline and the recipe at the
# paper's patience of 20) on ShallowNetV3 and Xception, with a paired bootstrap of each long pair, and Xception's
# baseline seeds 1 and 2 (46 minutes each on a 2-core CPU).
#
#   bash bench/gpu_jobs.sh DATA OUTDIR [SECONDS]
#
# DATA holds dfdc64/{train,validation,finetune,test}. Each process writes its own results folder, OUTDIR/<name>/jobs/
# (laid out as bench/results/jobs/), and OUTDIR/<name>.log; copy the jobs into bench/results/jobs/ and run
# `python -m bench.reproduce --report-only`. SECONDS (default 470) bounds each process; an unfinished job leaves no
# JSON. LONG_EPOCHS (default 100) caps the long jobs' epochs, RUNS (default /tmp/gpu-runs) holds their checkpoints,
# DEVICE (default cuda) and EXTRA (more bench.reproduce flags, e.g. "--limit 8 --epochs 1" for a smoke run) apply to all.
# No pip: the machine's own torch, numpy, scikit-learn and safetensors are enough (the report, which needs plotly,
# is rendered where the JSONs are copied to).
set -u
DATA=${1:?usage: bench/gpu_jobs.sh DATA OUTDIR [SECONDS]}
OUTDIR=${2:?usage: bench/gpu_jobs.sh DATA OUTDIR [SECONDS]}
LIMIT=${3:-470}
PY=${PYTHON:-python3}
RUNS=${RUNS:-/tmp/gpu-runs}
RECIPE=fdftnet-unfrozen-lowlr-no-cutout
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUTDIR"
R="$PY -m bench.reproduce --data $DATA --runs $RUNS --device ${DEVICE:-cuda} --no-report --epochs 16 --patience 5
   --long-epochs ${LONG_EPOCHS:-100} --long-patience 20 ${EXTRA:-}"

for bb in shallownetv3 xception; do
    (timeout "$LIMIT" $R --results "$OUTDIR/long-$bb" --only long --backbones $bb > "$OUTDIR/long-$bb.log" 2>&1 &&
     $PY -m bench.paired --data "$DATA/dfdc64" --a "$RUNS/dfdc64/$bb/long/baseline" \
         --b "$RUNS/dfdc64/$bb/long/$RECIPE" --save "$OUTDIR/paired_long_$bb.json" > /dev/null 2>> "$OUTDIR/long-$bb.log") &
done
timeout "$LIMIT" $R --results "$OUTDIR/xception-seeds" --only main --backbones xception --match baseline-s \
    > "$OUTDIR/xception-seeds.log" 2>&1 &
wait
for f in "$OUTDIR"/*.log; do echo "== $f"; grep -E "^\[|test acc|failed|Error" "$f" | tail -8; done
