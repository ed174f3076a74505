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
echo
echo "-- the OpenAI-compatible server on the demo model: one chat request with curl, then stop:"
port=${GS_DEMO_PORT:-18080}
log=build/demo-serve.log
"$bin" serve "$dir" --port "$port" --served-model-name demo --threads 2 > "$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q " on http://" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
grep -E "KV cache:|serving" "$log"
request='{"model": "demo", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16, "temperature": 0}'
echo "POST /v1/chat/completions $request"
curl -sS "http://127.0.0.1:$port/v1/chat/completions" -H "Content-Type: application/json" -d "$request"
echo
kill -TERM $server
wait $server && echo "server stopped cleanly (exit 0)"
trap - EXIT

cat <<'NOTE'

The demo model has RANDOM weights: the ids above are gibberish by construction. They show the
loader, the NVFP4 path and the CPU runner working end to end. To run a real checkpoint:

  build/gemmaserve generate --model FusenAI/gemma-4-26B-A4B-it-NVFP4 \
      --prompt-ids 2,105,2364,107,9259,106,107,105,4368,107 --max-tokens 64

  build/gemmaserve serve FusenAI/gemma-4-26B-A4B-it-NVFP4 --max-model-len 4096

(--model takes a directory or a Hugging Face id already in the local cache.)
NOTE
