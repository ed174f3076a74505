// UTF-8 helpers for the tokenizer: decoding one code point, repairing invalid input, and the two
// Unicode classes HF tokenizers consults for added tokens (\s = White_Space, \w = word char).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gs {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes the code point starting at s[i]. Returns its byte length (1..4), or 0 when the bytes at
// s[i] are not a valid UTF-8 sequence (overlong, surrogate, > U+10FFFF, truncated).
size_t DecodeUtf8(std::string_view s, size_t i, char32_t* cp);

// Length of the valid UTF-8 sequence starting with lead byte b, assuming the input is valid.
inline size_t Utf8SeqLen(unsigned char b) {
  return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

void AppendUtf8(char32_t cp, std::string* out);

bool IsValidUtf8(std::string_view s);

// Replaces every maximal invalid subsequence with U+FFFD (the Unicode "maximal subpart" practice,
// which is what Python's errors="replace" and the WHATWG TextDecoder do).
std::string RepairUtf8(std::string_view s);

// Byte length of the longest prefix of s that does not end inside an incomplete (but so far
// valid) UTF-8 sequence.
size_t CompleteUtf8Prefix(std::string_view s);

// Unicode White_Space (Rust regex \s).
bool IsUnicodeWhiteSpace(char32_t cp);
// Rust regex \w: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control.
bool IsUnicodeWordChar(char32_t cp);

namespace unicode_internal {
struct CodePointRange {
  char32_t first;
  char32_t last;
};
}  // namespace unicode_internal

}  // namespace gs
