#!/usr/bin/env bash
# `make demo`: writes a tiny random-weight Gemma 4 model and runs it end to end on the CPU.
set -euo pipefail
bin=${1:-build/gemmaserve}
dir=build/demo-model
echo "== gemmaserve demo =="
"$bin" make-demo-model --output "$dir" --overwrite
echo
echo "-- the demo tokenizer turns a chat turn into ids:"
printf '%s\n' '"<|turn>user\nHello!<turn|>\n<|turn>model\n"' > "$dir/prompt.jsonl"
ids=$("$bin" tokenize --tokenizer "$dir" --add-special-tokens --input "$dir/prompt.jsonl" | tr -d '[]')
echo "$ids"
echo
echo "-- greedy generation from those ids (NVFP4 experts, BF16 attention, CPU runner):"
out=$("$bin" generate --model "$dir" --prompt-ids "$ids" --max-tokens 16 --temperature 0)
echo "$out"
echo
echo "-- the same prompt fed token by token through the decode path gives the same ids:"
"$bin" generate --model "$dir" --prompt-ids "$ids" --max-tokens 16 --temperature 0 --prefill-chunk 1
echo
echo "-- and back to text:"
echo "[$out]" > "$dir/out.jsonl"
"$bin" detokenize --tokenizer "$dir" --input "$dir/out.jsonl"
cat <<'NOTE'

The demo model has RANDOM weights: the ids above are gibberish by construction. They show the
loader, the NVFP4 path and the CPU runner working end to end. To run a real checkpoint:

  build/gemmaserve generate --model FusenAI/gemma-4-26B-A4B-it-NVFP4 \
      --prompt-ids 2,105,2364,107,9259,106,107,105,4368,107 --max-tokens 64

(--model takes a directory or a Hugging Face id already in the local cache.)
NOTE
