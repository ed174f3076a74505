#!/usr/bin/env bash
# Runs ON the GPU machine (binaries from build_for_device.sh in .device/cuda/): Nsight Compute
# sections (speed of light, memory workload, warp stalls, occupancy) for a few instances of the
# named kernels in one bench scenario of the dummy 26B-A4B model. Used to find why a kernel is
# short of the bandwidth or tensor-core limit; the report text goes to $OUT/detail_<tag>.txt.
#   bash scripts/gpu/kernel_detail.sh TAG KERNEL_REGEX "BENCH ARGS" [launch-skip] [launch-count]
set -uo pipefail
here=${CUDA_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.device/cuda" && pwd)}
out=${OUT:-/tmp/gs-gpu-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$here/lib
export PATH=$PATH:/usr/local/cuda/bin
tag=$1 regex=$2 args=$3 skip=${4:-60} count=${5:-4}
eval ncu --kernel-name "regex:'$regex'" --launch-skip "$skip" --launch-count "$count" \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
  --section Occupancy --section LaunchStats --section SchedulerStats \
  "$here/bin/gemmaserve" bench --load-format dummy \
  --config "$here/configs/gemma-4-26B-A4B-it/config.json" $args > "$out/detail_$tag.txt" 2>&1
grep -E "^  [A-Za-z].*\(|Duration|DRAM Throughput|Memory Throughput|L2 Cache Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|Grid Size|Block Size|Theoretical Occ|Stall|Warp Cycles Per Issued|Issued Warp" \
  "$out/detail_$tag.txt" | head -120
