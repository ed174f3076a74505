#!/usr/bin/env bash
# The tests that also run under AddressSanitizer + UBSan: everything that parses untrusted input.
cd "$(dirname "$0")/.." || exit 1
ls tests/unit/*_test.cpp tests/oracle/*_test.cpp 2>/dev/null | xargs -n1 basename | sed 's/\.cpp$//' \
  | grep -E '(safetensors|checkpoint|config|tokenizer_json|jinja|fuzz|bad_input|parser)' | xargs
