// The tokenizer.json pipeline stages gemmaserve implements, in the forms Gemma's files use:
// normalizers (Replace with a string pattern, Prepend, Sequence), the Split pre-tokenizer with a
// string pattern (all five delimiter behaviours, invert), the TemplateProcessing post-processor
// (single-sequence template), and decoders (Replace, ByteFallback, Fuse, Strip, Sequence).
// Sequences are flattened into step lists when parsed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace gs {

struct NormalizerStep {
  enum class Kind { kReplace, kPrepend };
  Kind kind;
  std::string pattern;  // kReplace: literal text to find (non-empty)
  std::string content;  // kReplace: replacement; kPrepend: prefix
};

class Normalizer {
 public:
  bool empty() const { return steps_.empty(); }
  // Applies every step to `in`; returns a view of `in` itself when nothing changed, else of
  // *scratch.
  std::string_view Apply(std::string_view in, std::string* scratch) const;
  std::vector<NormalizerStep>& steps() { return steps_; }

 private:
  std::vector<NormalizerStep> steps_;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct SplitStep {
  std::string pattern;  // literal, non-empty
  SplitBehavior behavior;
  bool invert;
};

class PreTokenizer {
 public:
  bool empty() const { return steps_.empty(); }
  // Splits `in` into pre-tokens (views into `in`), dropping empty ones, like HF.
  void Apply(std::string_view in, std::vector<std::string_view>* out) const;
  std::vector<SplitStep>& steps() { return steps_; }

 private:
  std::vector<SplitStep> steps_;
};

struct DecoderStep {
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip };
  Kind kind;
  std::string pattern;  // kReplace
  std::string content;  // kReplace: replacement; kStrip: the one character to strip
  size_t start = 0;     // kStrip
  size_t stop = 0;      // kStrip
};

class Decoder {
 public:
  bool present() const { return present_; }
  void set_present() { present_ = true; }
  // Runs the chain over the token strings and joins the result (HF Decoder::decode).
  std::string Decode(std::vector<std::string> tokens) const;
  const std::vector<DecoderStep>& steps() const { return steps_; }
  std::vector<DecoderStep>& steps() { return steps_; }

 private:
  bool present_ = false;
  std::vector<DecoderStep> steps_;
};

// If `token` is a byte-fallback token "<0xHH>", stores the byte and returns true (HF's exact
// test: 6 bytes, "<0x" prefix, ">" suffix, two characters Rust's u8::from_str_radix accepts).
bool ParseByteToken(std::string_view token, uint8_t* byte);

// The single-sequence template: special-token id lists around the sequence ($A).
struct PostProcessor {
  bool present = false;
  std::vector<int32_t> prefix;
  std::vector<int32_t> suffix;
};

// Parsers from the JSON of each component. `path` names it in errors, e.g. "normalizer".
Status ParseNormalizer(const nlohmann::json& j, const std::string& path, Normalizer* out);
Status ParsePreTokenizer(const nlohmann::json& j, const std::string& path, PreTokenizer* out);
Status ParseDecoder(const nlohmann::json& j, const std::string& path, Decoder* out);
Status ParsePostProcessor(const nlohmann::json& j, const std::string& path, PostProcessor* out);

}  // namespace gs
