// Times HF tokenizers (npm `tokenizers`, the Rust library) on JSON-lines documents, one encode
// call at a time, add_special_tokens=true. Prints {"load_s","encode_s","tokens"} (best of N).
// Usage: node bench_hf_tokenizer.js TOKENIZER_JSON DOCS_JSONL [REPEATS]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node_modules', 'tokenizers'));

async function main() {
  let [file, docsFile, repeats] = process.argv.slice(2);
  if (fs.statSync(file).isDirectory()) file = path.join(file, 'tokenizer.json');
  const docs = fs.readFileSync(docsFile, 'utf8').split('\n').filter((l) => l).map(JSON.parse);
  let t = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(file);
  const loadS = Number(process.hrtime.bigint() - t) / 1e9;
  let best = Infinity, tokens = 0;
  for (let r = 0; r < Math.max(1, Number(repeats || 1)); ++r) {
    tokens = 0;
    t = process.hrtime.bigint();
    for (const d of docs) tokens += (await tok.encode(d, null, { addSpecialTokens: true })).getIds().length;
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
  }
  process.stdout.write(JSON.stringify({ load_s: loadS, encode_s: best, tokens }) + '\n');
}
main().catch((e) => { process.stderr.write(String(e.stack || e) + '\n'); process.exit(1); });
