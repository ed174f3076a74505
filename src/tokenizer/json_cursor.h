// A small, fast pull reader for JSON text, used for the large parts of tokenizer.json (the
// 262k-entry vocab and 515k merges) where building a DOM would cost most of the load time.
// Every error names the source, line and column, and the reader never reads out of bounds.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/status.h"

namespace gs {

class JsonCursor {
 public:
  // `source` names the input in error messages (usually the file path).
  JsonCursor(std::string_view text, std::string source);

  // An error "SOURCE: line L, column C: MESSAGE" at the current position.
  Error ErrorHere(std::string_view message) const;
  size_t position() const { return pos_; }
  // Moves to an earlier recorded position (to read a value seen before its dependencies).
  void Seek(size_t pos) { pos_ = pos < text_.size() ? pos : text_.size(); }
  const std::string& source() const { return source_; }

  // Skips whitespace; returns the next character or '\0' at the end of the input.
  char Peek();
  Status Expect(char c);

  // Objects: `bool first = true; while (true) { GS_ASSIGN_OR_RETURN(bool more, c.NextKey(&first,
  // &key)); if (!more) break; ...read the value... }` after Expect('{').
  Expected<bool> NextKey(bool* first, std::string* key);
  // Arrays: the same pattern after Expect('[').
  Expected<bool> NextElement(bool* first);

  Status ReadString(std::string* out);
  Status ReadInt64(int64_t* out);
  Status ReadBool(bool* out);
  // Consumes `null` if it is next; returns whether it did.
  bool TryReadNull();
  // Skips one value of any type (nesting limited to kMaxDepth).
  Status SkipValue();
  // Skips one value and returns its text.
  Status RawValue(std::string_view* out);
  // Only whitespace may remain.
  Status ExpectEnd();

  static constexpr int kMaxDepth = 256;

 private:
  Status ReadHex4(uint32_t* out);
  Status SkipLiteral(std::string_view word);
  Status SkipNumber();

  std::string_view text_;
  size_t pos_ = 0;
  std::string source_;
};

}  // namespace gs
