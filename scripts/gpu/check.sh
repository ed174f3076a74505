#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, with binaries built elsewhere by
# scripts/gpu/build_for_device.sh (in .device/cuda/, or the directory this script sits in):
# every GPU test binary, compute-sanitizer memcheck over the runner on the tiny demo model, then
# the dummy-weight 26B-A4B benchmark. Full logs go to $OUT (default /tmp/gs-gpu-out); a short
# summary table is printed last.
# CHECK_PARTS (default "tests sanitizers bench") runs a subset: the whole run takes ~10 minutes
# on an H100, the most one device call may take, so it can be split over two calls.
# BENCH_ARGS adds to the benchmark's arguments (e.g. the full table's, docs/benchmarks.md).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"  # here, out, LD_LIBRARY_PATH, cfg
# Golden data: beside the binaries, or in the repository the binaries were built into.
for g in "$here/data/golden" "$here/../../tests/data/golden"; do
  [ -d "$g" ] && export GS_GOLDEN_ROOT=$(cd "$g" && pwd) && break
done
# The bf16-conditioned set (make_golden.py --profile bf16), where it exists; golden_cuda_test
# asserts the strict criterion on it and skips it loudly without it.
for g in "$here/data/golden_bf16" "$here/../../tests/data/golden_bf16"; do
  [ -d "$g" ] && export GS_GOLDEN_BF16_ROOT=$(cd "$g" && pwd) && break
done
summary=$out/summary.txt
: > "$summary"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
  | tee "$out/device.txt"
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)

parts=${CHECK_PARTS:-tests sanitizers bench}
part() { [[ " $parts " == *" $1 "* ]]; }

echo "| test binary | result | seconds |" >> "$summary"
echo "|---|---|---:|" >> "$summary"
part tests && for t in "$here"/tests/*_test; do
  name=$(basename "$t")
  start=$(date +%s)
  echo "===== $name" >> "$out/tests.log"
  if timeout 300 "$t" --gtest_color=no >> "$out/tests.log" 2>&1; then result=PASS; else result="FAIL($?)"; fi
  skipped=$(grep -c '\[  SKIPPED \]' "$out/tests.log" || true)
  echo "| $name | $result | $(( $(date +%s) - start )) |" >> "$summary"
  echo "$name: $result"
done
if part tests; then
  grep -E '^\[  (FAILED|SKIPPED) ' "$out/tests.log" | sort -u | head -40 >> "$summary" || true
fi

if part sanitizers && command -v compute-sanitizer >/dev/null && [ -x "$here/tests/cuda_runner_test" ]; then
  # The batched demo, and decode steps at batch 1-4 with graphs and eager (batch 1: the folded
  # router's kernels and the paired GEMV).
  for mc in "memcheck:BatchedSequencesMatchCpu:batched demo" \
            "memcheck_decode:GraphDecodeIdenticalToEager:graph vs eager decode, batch 1-4"; do
    log=${mc%%:*} rest=${mc#*:}
    test=${rest%%:*} what=${rest#*:}
    start=$(date +%s)
    if timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$here/tests/cuda_runner_test" --gtest_filter="CudaRunnerDemo.$test" \
        > "$out/$log.log" 2>&1; then result=PASS; else result="FAIL($?)"; fi
    echo "| memcheck cuda_runner_test ($what) | $result | $(( $(date +%s) - start )) |" >> "$summary"
    tail -3 "$out/$log.log"
  done
  # Shared-memory races in the kernels with block-level cooperation: the fused decode attention
  # on sliding layers with the FP8 cache (its most involved path: e4m3 codes copied into the
  # tile rows and expanded there in place; ~115 s under racecheck on the H100: the whole attention
  # suite, with its CPU reference, does not finish), the fused qk-norm/RoPE/KV write and the
  # one-launch decode router. (Session 8 on the H100: the tests 400 s, this racecheck 114 s, the
  # others 7 s.)
  for rc in "attention_test:*AttentionFused*Sliding256Fp8Kv" "ops_test:*QkvNormRopeKv*" \
            "moe_test:*RouterDecode*"; do
    t=${rc%%:*} filter=${rc#*:}
    start=$(date +%s)
    if timeout ${RACECHECK_TIMEOUT:-240} compute-sanitizer --tool racecheck --error-exitcode 9 \
        "$here/tests/$t" --gtest_filter="$filter" > "$out/racecheck_$t.log" 2>&1; then
      result=PASS; else result="FAIL($?)"; fi
    echo "| racecheck $t ($filter) | $result | $(( $(date +%s) - start )) |" >> "$summary"
    tail -2 "$out/racecheck_$t.log"
  done
fi

if part bench && [ -x "$here/bin/gemmaserve" ]; then
  # CLI smoke test (informational): greedy continuations of a demo-model prompt on both devices.
  # The random demo's logits are flat, so a bf16 near-tie may legitimately change a token.
  demo=$(mktemp -d)/demo
  "$here/bin/gemmaserve" make-demo-model --output "$demo" > /dev/null
  cpu_ids=$("$here/bin/gemmaserve" generate --model "$demo" --prompt-ids 2,17,300,5 --max-tokens 8 \
            --temperature 0 --device cpu 2> "$out/generate.err")
  gpu_ids=$("$here/bin/gemmaserve" generate --model "$demo" --prompt-ids 2,17,300,5 --max-tokens 8 \
            --temperature 0 --device cuda 2>> "$out/generate.err")
  echo "| generate --device cpu: $cpu_ids / cuda: $gpu_ids | $([ "$cpu_ids" = "$gpu_ids" ] && echo same || echo "differ (informational)") | |" >> "$summary"
  echo "decode/prefill benchmark on $card (dummy 26B-A4B weights)" >> "$summary"
  timeout ${BENCH_TIMEOUT:-240} "$here/bin/gemmaserve" bench --load-format dummy \
      --config "$cfg" ${BENCH_ARGS:-} \
      > "$out/bench.log" 2> "$out/bench.err" || echo "bench failed ($?)" >> "$summary"
  cat "$out/bench.log" >> "$summary"
  tail -5 "$out/bench.err"
fi
echo
echo "================ summary ($card)"
cat "$summary"
