#include "tools/demo_tokenizer.h"

#include <cstdio>
#include <map>
#include <string>

namespace gs {
namespace {

using nlohmann::json;

// Gemma 4's control tokens below id 108 (reference tokenizer §1.3); other low ids are unused.
const std::map<int, std::string>& GemmaSpecials() {
  static const std::map<int, std::string> specials = {
      {0, "<pad>"},           {1, "<eos>"},           {2, "<bos>"},          {3, "<unk>"},
      {46, "<|tool>"},        {47, "<tool|>"},        {48, "<|tool_call>"},  {49, "<tool_call|>"},
      {50, "<|tool_response>"}, {51, "<tool_response|>"}, {52, "<|\"|>"},   {98, "<|think|>"},
      {100, "<|channel>"},    {101, "<channel|>"},    {105, "<|turn>"},      {106, "<turn|>"}};
  return specials;
}

constexpr int kNewlineId = 107, kFirstByteId = 108, kFirstCharId = kFirstByteId + 256;

constexpr const char* kDemoWords[] = {
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "model", "token", "random",
    "weights", "gemma", "server", "hello", "world", "answer", "question", "because", "about",
    "through", "between", "without", "people", "number", "little", "should", "before", "after",
    "under", "water", "light", "sound", "place", "small", "large", "great", "right", "think",
    "where", "every", "other", "these", "those", "there", "could", "first", "never", "always",
    "something", "nothing", "example", "language", "computer", "memory", "kernel", "expert",
    "attention", "window", "layer", "value", "float", "quantized", "sample", "stream", "request"};

json AddedToken(int id, const std::string& content) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

}  // namespace

json DemoTokenizerJson(int vocab_size) {
  json vocab = json::object();
  json added = json::array();
  for (int id = 0; id < kNewlineId; ++id) {
    auto it = GemmaSpecials().find(id);
    const std::string token = it != GemmaSpecials().end() ? it->second : "<unused" + std::to_string(id) + ">";
    vocab[token] = id;
    added.push_back(AddedToken(id, token));
  }
  vocab["\n"] = kNewlineId;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = kFirstByteId + b;
  }
  int id = kFirstCharId;
  const std::string space = "\xe2\x96\x81";  // '▁', the normalized space
  vocab[space] = id++;
  for (char c = '!'; c <= '~' && id < vocab_size; ++c) vocab[std::string(1, c)] = id++;
  // The rest of the vocabulary: merges that spell common English words (each word built one
  // character at a time), so every model id decodes to text and the output reads like words.
  json merges = json::array();
  for (const char* word : kDemoWords) {
    std::string token = space;
    for (const char* c = word; *c && id < vocab_size; ++c) {
      const std::string next = token + *c;
      if (!vocab.contains(next)) {
        merges.push_back({token, std::string(1, *c)});
        vocab[next] = id++;
      }
      token = next;
    }
  }
  for (; id < vocab_size; ++id) vocab["<unused" + std::to_string(id) + ">"] = id;
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}},
          {"pre_tokenizer",
           {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"}, {"invert", false}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"SpecialToken", {{"id", "<bos>"}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {2}}, {"tokens", {"<bos>"}}}}}}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}}}}}},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false},
            {"vocab", vocab}, {"merges", merges}}}};
}

json DemoTokenizerConfig() {
  return {{"bos_token", "<bos>"}, {"eos_token", "<eos>"}, {"pad_token", "<pad>"}, {"unk_token", "<unk>"},
          {"add_bos_token", true}, {"add_eos_token", false}, {"model_max_length", 4096},
          {"tokenizer_class", "GemmaTokenizer"}};
}

}  // namespace gs
