#!/usr/bin/env bash
# Regenerates the golden test data (tests/data/golden) on the GPU machine, which has python3 with
# torch, numpy, safetensors and transformers (5.17 at the time of writing). No GPU is used: the
# reference is CPU float32. The result comes back as $OUT/golden.tar.gz (+ $OUT/make_golden.log).
#
#   bash scripts/gpu/make_golden.sh            # on the device machine, from the repo root
#   tar xzf golden.tar.gz -C tests/data        # here: replaces tests/data/golden/<config>/...
#
# The bf16-conditioned set (tests/data/golden_bf16, make_golden.py --profile bf16):
#   GOLDEN_NAME=golden_bf16 bash scripts/gpu/make_golden.sh --profile bf16
#   -> $OUT/golden_bf16.tar.gz + $OUT/make_golden_bf16.log; tar xzf golden_bf16.tar.gz -C tests/data
#
# The bf16-conditioned vision set (tests/data/golden_vision_bf16, make_golden_vision.py --profile
# bf16; CPU only, up to ~7 min; the run fails, and no tarball is made, if no model meets the
# margins — make_golden_vision_bf16.log says why):
#   MAKE_GOLDEN_PY=scripts/golden/make_golden_vision.py GOLDEN_NAME=golden_vision_bf16 \
#       bash scripts/gpu/make_golden.sh --profile bf16
#   -> $OUT/golden_vision_bf16.tar.gz + $OUT/make_golden_vision_bf16.log;
#   here: tar xzf golden_vision_bf16.tar.gz -C tests/data
#
# MAKE_GOLDEN_PY overrides the script path (e.g. a copy under .device/ that is not committed yet).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?OUT must name the folder whose files come back from the device machine}"
script="${MAKE_GOLDEN_PY:-scripts/golden/make_golden.py}"
name="${GOLDEN_NAME:-golden}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1
python3 "$script" --out "$work/$name" "$@" 2>&1 | tee "$OUT/make_$name.log"
tar czf "$OUT/$name.tar.gz" -C "$work" "$name"
ls -l "$OUT"
