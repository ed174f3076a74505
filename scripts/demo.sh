#!/usr/bin/env bash
# `make demo`: writes a tiny random-weight Gemma 4 model and runs it end to end on the CPU.
set -euo pipefail
bin=${1:-build/gemmaserve}
dir=build/demo-model
echo "== gemmaserve demo =="
"$bin" make-demo-model --output "$dir" --overwrite
echo
echo "-- greedy generation from a prompt of token ids (NVFP4 experts, BF16 attention, CPU runner):"
"$bin" generate --model "$dir" --prompt-ids 2,105,2364,107,9,42,7 --max-tokens 16 --temperature 0
echo
echo "-- the same prompt fed token by token through the decode path gives the same ids:"
"$bin" generate --model "$dir" --prompt-ids 2,105,2364,107,9,42,7 --max-tokens 16 --temperature 0 --prefill-chunk 1
cat <<'NOTE'

The demo model has RANDOM weights: the ids above are gibberish by construction. They show the
loader, the NVFP4 path and the CPU runner working end to end. To run a real checkpoint:

  build/gemmaserve generate --model FusenAI/gemma-4-26B-A4B-it-NVFP4 --prompt-ids 2,105,... \
      --max-tokens 64

(--model takes a directory or a Hugging Face id already in the local cache.)
NOTE
