#!/usr/bin/env bash
# One GPU session, run through the workplace's device tool from the repo root, with .whl (dask,
# toolz, partd, locket, xarray wheels) and .devdata/fields.npz (scripts/train_default.py prepare)
# carried along. In order of value: train the default model, GPU tests, GPU benchmarks.
set -u
OUT=${OUT:-/tmp/xdl_device_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, xarray, dask, numpy; print('torch', torch.__version__, 'xarray', xarray.__version__, 'dask', dask.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
echo "== train default model"; date
timeout 270 python3 scripts/train_default.py train .devdata/fields.npz --minutes ${TRAIN_MINUTES:-3.5} \
    --batch-size 32 --device cuda --out "$OUT/pconv-default.safetensors" 2>&1 | tee "$OUT/train.txt" | tail -25
echo "== gpu tests"; date
timeout 80 python3 -m pytest -q -m gpu tests/test_gpu.py tests/test_train.py -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt"
echo "== predict_gpu"; date
timeout 150 python3 benchmarks/predict_gpu.py 2>&1 | tee "$OUT/predict_gpu.txt"
echo "== models"; date
timeout 60 python3 benchmarks/models.py --devices cuda --batch 32 --size 256 --seconds 1 2>&1 | tee "$OUT/models_gpu.txt"
date
