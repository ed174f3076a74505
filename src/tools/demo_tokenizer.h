// The tokenizer make-demo-model writes: a character-level BPE tokenizer.json in Gemma's format
// (normalizer ' '->'▁', Split pre-tokenizer, <bos> post-processor, byte fallback) whose special
// tokens sit at Gemma 4's ids (<bos> 2, <|turn> 105, <turn|> 106, tool and channel markers), so
// the real Gemma 4 chat template renders and tokenizes against the demo model's small vocabulary.
#pragma once

#include <nlohmann/json.hpp>

namespace gs {

nlohmann::json DemoTokenizerJson(int vocab_size);
nlohmann::json DemoTokenizerConfig();

}  // namespace gs
