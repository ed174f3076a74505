// A small Gemma-shaped tokenizer.json built in code (byte fallback, metaspace normalizer, <bos>
// template, Replace/ByteFallback/Fuse decoder) for fast unit and fuzz tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace gs::testing {

inline nlohmann::json SmallTokenizerJson() {
  using nlohmann::json;
  json vocab = json::object();
  int id = 0;
  for (const char* t : {"<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>"}) vocab[t] = id++;
  static const char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    vocab[std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">"] = id++;
  }
  for (const char* t : {"\u2581", "a", "b", "c", "e", "h", "t", ".", "\n", "\u00e9", "\u2581t",
                        "he", "\u2581the", "ab", "abc", "\n\n", "\u2581\u2581"}) {
    vocab[t] = id++;
  }
  json merges = json::array({json::array({"\u2581", "t"}), json::array({"h", "e"}),
                             json::array({"\u2581t", "he"}), json::array({"a", "b"}),
                             json::array({"ab", "c"}), json::array({"\n", "\n"}),
                             json::array({"\u2581", "\u2581"})});
  auto added = [](int tid, const char* content) {
    return json{{"id", tid}, {"content", content}, {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  return json{
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", json::array({added(0, "<pad>"), added(1, "<eos>"), added(2, "<bos>"),
                                    added(3, "<unk>"), added(4, "<start_of_turn>")})},
      {"normalizer",
       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}},
      {"pre_tokenizer",
       {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"},
        {"invert", false}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array()},
        {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {2}}, {"tokens", {"<bos>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}},
                                   {"content", " "}},
                                  {{"type", "ByteFallback"}},
                                  {{"type", "Fuse"}}})}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
        {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merges}}}};
}

// Id of the byte-fallback token <0xNN> in SmallTokenizerJson().
inline int ByteId(unsigned char b) { return 5 + b; }

}  // namespace gs::testing
