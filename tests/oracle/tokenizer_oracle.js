// Oracle for the tokenizer tests: runs HF tokenizers (npm `tokenizers`, the Rust library) over
// a job file and writes the results as JSON lines.
// Usage: node tokenizer_oracle.js JOBS_JSON
//   JOBS_JSON: [{"tokenizer": PATH, "strings": JSONL_PATH, "id_lists": JSONL_PATH|null,
//                "out": OUTPUT_JSONL_PATH}, ...]
// For each string: {"ids": encode(s, add_special=false), "ids_special": encode(s, true),
//   "decoded": decode(ids, skip=false), "decoded_skip": decode(ids_special, skip=true)}.
// For each id list: {"decoded": decode(ids, false), "decoded_skip": decode(ids, true)}.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node_modules', 'tokenizers'));

const readJsonl = (f) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.length).map(JSON.parse);

async function runJob(job) {
  const tok = Tokenizer.fromFile(job.tokenizer);
  const lines = [];
  for (const s of readJsonl(job.strings)) {
    const ids = (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
    const idsSpecial = (await tok.encode(s, null, { addSpecialTokens: true })).getIds();
    lines.push(JSON.stringify({
      ids, ids_special: idsSpecial,
      decoded: await tok.decode(ids, false),
      decoded_skip: await tok.decode(idsSpecial, true),
    }));
  }
  if (job.id_lists) {
    for (const ids of readJsonl(job.id_lists)) {
      lines.push(JSON.stringify({
        decoded: await tok.decode(ids, false), decoded_skip: await tok.decode(ids, true),
      }));
    }
  }
  fs.writeFileSync(job.out, lines.join('\n') + '\n');
}

async function main() {
  const jobs = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  for (const job of jobs) await runJob(job);
}
main().catch((e) => { process.stderr.write(String(e.stack || e) + '\n'); process.exit(1); });
