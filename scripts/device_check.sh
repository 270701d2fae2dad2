#!/usr/bin/env bash
# One GPU session, run through the workplace's device tool from the repo root, with .whl (dask,
# toolz, partd, locket, xarray wheels; for predict_gpu.py's LocalCUDACluster run also distributed,
# dask-cuda and their dependencies, else that run says it is skipped) and .devdata/fields.npz
# (scripts/train_default.py prepare) carried along. In order: GPU tests (each compiles its model: allow minutes), the predict
# benchmark (issue 2), the pipeline's own cost with a near-free model on the GPU (issue 17), zoo
# forward figures; TRAIN=1 also retrains fill-unet sizes side by side.
set -u
OUT=${OUT:-/tmp/xdl_device_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, xarray, dask, numpy; print('torch', torch.__version__, 'xarray', xarray.__version__, 'dask', dask.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
echo "== gpu tests"; date
timeout ${TEST_SECONDS:-240} python3 -m pytest -q -m gpu tests/test_gpu.py tests/test_train.py -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt"
echo "== predict_gpu"; date
timeout ${BENCH_SECONDS:-200} python3 benchmarks/predict_gpu.py 2>&1 | tee "$OUT/predict_gpu.txt"
echo "== pipeline_overhead (issue 17: xdl vs naive apply_ufunc vs dask elementwise, model on the GPU)"; date
timeout ${OVERHEAD_SECONDS:-150} python3 benchmarks/pipeline_overhead.py --device cuda --repeats 5 2>&1 | tee "$OUT/pipeline_overhead_gpu.txt"
echo "== models"; date
timeout 60 python3 benchmarks/models.py --devices cuda --batch 32 --size 256 --seconds 1 2>&1 | tee "$OUT/models_gpu.txt"
[ "${TRAIN:-0}" = 1 ] || { date; exit 0; }
echo "== train default model: three fill-unet sizes side by side (the GPU is mostly idle with one)"; date
train() {  # name, then fill-unet options
    local name=$1; shift
    timeout ${TRAIN_SECONDS:-280} python3 scripts/train_default.py train .devdata/fields.npz --minutes ${TRAIN_MINUTES:-3.6} \
        --batch-size ${TRAIN_BATCH:-32} --tile ${TRAIN_TILE:-256} --device cuda --out "$OUT/fill-$name.safetensors" "$@" \
        > "$OUT/train-$name.txt" 2>&1
}
train p4d3 --patch 4 --depth 3 --base-channels 32 --max-channels 128 &
train p4d4 --patch 4 --depth 4 --base-channels 48 --max-channels 192 &
train p2d4 --patch 2 --depth 4 --base-channels 32 --max-channels 128 &
wait
tail -n 4 "$OUT"/train-*.txt
date
