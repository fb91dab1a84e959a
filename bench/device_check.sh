#!/bin/bash
# What to run on a lent GPU machine, in one go (4.5 minutes on an H100): the CUDA tests, the GPU speed
# benchmark, and real fine-tunes on dfdc64 from the shipped baseline, seeds 0..2, evaluated on validation.
#
#   bash bench/device_check.sh OUTDIR [DFDC64_DIR]
#
# DFDC64_DIR needs finetune/ and validation/ (default ../shared/data/dfdc64). The machine's own Python is
# used as it is (no pip): tests that need gradio, plotly or datasets are not run there; CI runs them.
set -u
OUTDIR=${1:?usage: bench/device_check.sh OUTDIR [DFDC64_DIR]}
DATA=${2:-../shared/data/dfdc64}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
step() { echo "== $1 ($(date +%T))"; }

step env
nvidia-smi -L
$PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())"

step "tests (CUDA paths, then the core suite on this torch)"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_models.py tests/test_backbones.py \
    tests/test_train.py tests/test_data.py tests/test_metrics.py tests/test_precise_bn.py \
    --deselect tests/test_data.py::test_hf_imagefolder_matches_folder 2>&1 | tee "$OUTDIR/pytest.log" | tail -25

step "speed benchmark (GPU)"
timeout 180 $PY -m bench.speed --device cuda --sections latency,throughput,finetune,fit --save > "$OUTDIR/speed.log" 2>&1
tail -3 "$OUTDIR/speed.log"
cp bench/results/speed_gpu.json "$OUTDIR/" 2>/dev/null && $PY -m bench.speed --from-json "$OUTDIR/speed_gpu.json" --markdown

step "dfdc64 fine-tunes (unfrozen, backbone lr 1e-4, no Cutout) from checkpoints/baseline-shallownetv3-dfdc64"
if [ -d "$DATA/finetune" ] && [ -d "$DATA/validation" ]; then
    for seed in 0 1 2; do
        run=/tmp/devcheck/ft-seed$seed
        timeout 70 $PY -m fdftnet finetune --backbone-from checkpoints/baseline-shallownetv3-dfdc64 \
            --data "$DATA" --no-freeze --backbone-lr 1e-4 --no-cutout --mb-blocks 3 --epochs 16 --patience 5 \
            --batch-size 128 --seed $seed --device cuda --out $run --overwrite > "$OUTDIR/ft-seed$seed.log" 2>&1
        tail -2 "$OUTDIR/ft-seed$seed.log"
        $PY -m fdftnet evaluate --model $run --data "$DATA" --split validation --device cuda \
            --json "$OUTDIR/ft-seed$seed-validation.json" && cp $run/training.json "$OUTDIR/ft-seed$seed-training.json"
    done
else
    echo "no $DATA/{finetune,validation}: skipped"
fi
step done
