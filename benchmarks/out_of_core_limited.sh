#!/usr/bin/env bash
# predict -> to_zarr over the 4 GB store of predict_cpu.py inside a 2 GB memory cgroup (v1, as root):
# the data are twice the memory the process may use. Run benchmarks/predict_cpu.py first (it makes
# benchmarks/_data/src_4gb.zarr).
set -euo pipefail
cd "$(dirname "$0")/.."
cg=/sys/fs/cgroup/memory/xdl_2g
mkdir -p "$cg"
echo $((2 * 1024 * 1024 * 1024)) > "$cg/memory.limit_in_bytes"
echo 0 > "$cg/memory.max_usage_in_bytes" 2>/dev/null || true
bash -c "echo \$\$ > $cg/cgroup.procs; exec python benchmarks/predict_cpu.py --ooc-child 4"
echo "cgroup limit $(( $(cat $cg/memory.limit_in_bytes) / 1048576 )) MB, peak usage (incl. page cache) $(( $(cat $cg/memory.max_usage_in_bytes) / 1048576 )) MB, times the limit was hit (page cache reclaimed): $(cat $cg/memory.failcnt)"
