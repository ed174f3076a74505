#include "tokenizer/streaming_detokenizer.h"

#include "tokenizer/unicode.h"

namespace gs {

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), skip_special_(skip_special_tokens) {
  const Decoder& d = tokenizer.decoder();
  if (!d.present()) {
    mode_ = Mode::kJoinWithSpace;
    return;
  }
  // Classify the chain: steps before the first Fuse act per token (or per byte run), which is
  // what makes emitting at run boundaries exact.
  local_.set_present();
  bool fused = false;
  int byte_fallbacks = 0;
  for (const DecoderStep& step : d.steps()) {
    if (fused) {
      if (step.kind == DecoderStep::Kind::kFuse) continue;
      if (step.kind == DecoderStep::Kind::kStrip && step.stop == 0 && lead_strip_initial_ == 0) {
        DecodeUtf8(step.content, 0, &lead_char_);
        lead_strip_initial_ = step.start;
        continue;
      }
      mode_ = Mode::kHoldAll;
      return;
    }
    if (step.kind == DecoderStep::Kind::kFuse) fused = true;
    if (step.kind == DecoderStep::Kind::kByteFallback) ++byte_fallbacks;
    if (byte_fallbacks == 0 && step.kind != DecoderStep::Kind::kFuse) pre_byte_steps_.push_back(step);
    local_.steps().push_back(step);
  }
  if (byte_fallbacks > 1) mode_ = Mode::kHoldAll;
  has_byte_fallback_ = byte_fallbacks == 1;
  lead_strip_ = lead_strip_initial_;
}

bool StreamingDetokenizer::IsByteToken(const std::string& s) const {
  if (!has_byte_fallback_) return false;
  // What ByteFallback will see: the token after the per-token steps that precede it.
  std::string t = s;
  if (!pre_byte_steps_.empty()) {
    Decoder pre;
    pre.set_present();
    pre.steps() = pre_byte_steps_;
    t = pre.Decode({s});
  }
  uint8_t b;
  return ParseByteToken(t, &b);
}

std::string StreamingDetokenizer::LeadStrip(std::string text) {
  size_t cut = 0;
  while (lead_strip_ > 0 && cut < text.size()) {
    char32_t cp = 0;
    const size_t len = DecodeUtf8(text, cut, &cp);
    if (len == 0 || cp != lead_char_) {
      lead_strip_ = 0;
      break;
    }
    cut += len;
    --lead_strip_;
  }
  if (cut < text.size()) lead_strip_ = 0;
  return text.substr(cut);
}

std::string StreamingDetokenizer::DecodePending() {
  std::vector<std::string> tokens;
  for (int32_t id : pending_) tokens.push_back(*tokenizer_->DecoderInput(id));
  pending_.clear();
  return LeadStrip(local_.Decode(std::move(tokens)));
}

std::string StreamingDetokenizer::Push(int32_t id) {
  const std::string* s = tokenizer_->DecoderInput(id);
  // Tokens Decode() would drop do not interrupt a byte run either.
  if (s == nullptr || (skip_special_ && tokenizer_->SkippedWhenSkippingSpecial(id))) return "";
  switch (mode_) {
    case Mode::kJoinWithSpace: {
      std::string out = emitted_any_ ? " " + *s : *s;
      emitted_any_ = true;
      return out;
    }
    case Mode::kHoldAll:
      pending_.push_back(id);
      return "";
    case Mode::kLocal:
      pending_.push_back(id);
      if (IsByteToken(*s)) return "";
      return DecodePending();
  }
  return "";
}

std::string StreamingDetokenizer::Flush() {
  std::string out;
  if (mode_ == Mode::kHoldAll) {
    out = tokenizer_->Decode(pending_, /*skip_special_tokens=*/false);
    pending_.clear();
  } else if (mode_ == Mode::kLocal && !pending_.empty()) {
    out = DecodePending();
  }
  lead_strip_ = lead_strip_initial_;
  emitted_any_ = false;
  return out;
}

}  // namespace gs
