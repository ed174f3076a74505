#!/usr/bin/env bash
# Runs ON the GPU machine (like check.sh, from binaries built by build_for_device.sh): per-kernel
# GPU time of the dummy 26B-A4B decode at the given batch sizes and of one prefill, with nsys
# (graph kernels traced one by one) or, without nsys, ncu at the card's own clocks. Prints the
# top kernels per scenario; full CSVs go to $OUT.
#   bash .device/cuda/profile.sh [batches (default "1 32")] [prefill tokens (default 4096)]
# KV_DTYPE=fp8 profiles with the FP8 KV cache; GEN_TOKENS sets the decode steps (default 12).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"  # here, out, LD_LIBRARY_PATH, cfg
export PATH=$PATH:/usr/local/cuda/bin
bin="$here/bin/gemmaserve"
nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys 2>/dev/null | head -1)
for scenario in ${1:-1 32} prefill; do
  if [ "$scenario" = prefill ]; then
    args="--batch-sizes 1 --gen-tokens 3 --eager-steps 0 --prefill-lens ${2:-4096}"
  else
    args="--batch-sizes $scenario --gen-tokens ${GEN_TOKENS:-12} --eager-steps 0 --prefill-lens ''"
  fi
  args="$args --kv-cache-dtype ${KV_DTYPE:-bf16}"
  echo "===== $scenario"
  if [ -n "$nsys" ]; then
    eval "$nsys" profile --cuda-graph-trace=node -f true -o "$out/p_$scenario" "$bin" bench \
      --load-format dummy --config "$cfg" $args > "$out/p_$scenario.log" 2>&1
    "$nsys" stats --report cuda_gpu_kern_sum --format csv --output "$out/k_$scenario" \
      "$out/p_$scenario.nsys-rep" > /dev/null 2>&1
    rm -f "$out/p_$scenario.nsys-rep" "$out/p_$scenario.sqlite"
    # Columns: Time(%), Total Time (ns), Instances, Avg, Med, Min, Max, StdDev, Name
    awk -F'","' 'NR>1 {gsub(/"/,""); printf "%6.1f%% %10.0f us %6d x %8.1f us  %s\n", $1, $2/1000, $3, $4/1000, substr($9,1,110)}' \
      "$out/k_${scenario}_cuda_gpu_kern_sum.csv" | head -25
  else
    eval ncu --cache-control none --clock-control none --metrics gpu__time_duration.sum --csv \
      "$bin" bench --load-format dummy --config "$cfg" $args > "$out/ncu_$scenario.csv" 2> "$out/p_$scenario.log"
    python3 - "$out/ncu_$scenario.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = len(hdr) - 1
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[1:]:
    try: v = float(r[vi].replace(",", ""))
    except ValueError: continue
    tot[r[ki][:100]] += v; cnt[r[ki][:100]] += 1
s = sum(tot.values())
for k, v in sorted(tot.items(), key=lambda x: -x[1])[:25]:
    print(f"{100*v/s:6.1f}% {v/1000:10.0f} us {cnt[k]:6d} x {v/cnt[k]/1000:8.1f} us  {k}")
PY
  fi
done
