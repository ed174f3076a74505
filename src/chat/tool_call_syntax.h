// The grammar of one Gemma 4 tool call, parsed incrementally and translated to JSON.
//
// The model writes a call as `<|tool_call>call:NAME{ARGS}<tool_call|>`; this class sees the text
// after `<|tool_call>`, one byte at a time, and says when the call is complete or malformed.
// Byte-at-a-time means its verdict cannot depend on how the stream was split.
//
// Grammar (what the Gemma 4 chat template's format_argument produces, plus whitespace between
// tokens, which models sometimes add):
//   call    := "call:" NAME "{" members? "}" ws* "<tool_call|>"
//   NAME    := [A-Za-z0-9_.-]{1,256}
//   members := ws* key ws* ":" ws* value ws* ("," ws* key ws* ":" ws* value ws*)*
//   key     := bare-key | STRING          bare-key: bytes other than :{}[],< (trailing ws trimmed)
//   value   := STRING | object | array | number | true | false | null
//   object  := "{" members? "}"           array := "[" ws* (value ws* ("," ws* value ws*)*)? "]"
//   STRING  := `<|"|>` any bytes, valid UTF-8, not containing `<|"|>` `<|"|>`
//   number  := JSON number grammar, copied verbatim (the template prints Python str() numbers,
//              which are valid JSON; verbatim keeps big integers and float digits exact)
//   true/false also as Python's True/False; null also as None/none/nil (older templates printed
//   Python's None; vLLM accepts the same spellings)
// Anything else (bare words, trailing commas, bad numbers, unbalanced brackets, invalid UTF-8,
// nesting deeper than max_depth) is an error.
//
// The JSON is written the way Python's json.dumps(..., ensure_ascii=False) writes it (", " and
// ": " separators, only '"', '\\' and control characters escaped), i.e. byte-identical to vLLM's
// `arguments` for the same call. Keys keep the model's order; duplicate keys are kept as written.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gs {

class GemmaCallSyntax {
 public:
  enum class Step { kMore, kDone, kError };

  explicit GemmaCallSyntax(int max_depth = 64) : max_depth_(max_depth) {}

  // Consumes the next byte of the call body. After kDone or kError the object must not be fed.
  Step Push(char c);

  // The function name; complete once name_complete() (the `{` after it was seen).
  const std::string& name() const { return name_; }
  bool name_complete() const { return name_complete_; }
  // The arguments JSON built so far. While parsing it is a prefix of the final text (for as long
  // as the call turns out well-formed); complete after kDone.
  const std::string& json() const { return json_; }
  // Inside a quoted key or string value (or its opening delimiter), where any byte is text.
  bool in_string() const {
    return state_ == State::kString || state_ == State::kQuotedKey ||
           state_ == State::kStringOpen || state_ == State::kQuotedKeyOpen;
  }
  // Inside a bare value (number or literal), and its bytes so far: guided decoding checks that
  // they can still become a valid one.
  bool in_bare_value() const { return state_ == State::kBare; }
  const std::string& bare_value() const { return bare_; }
  // Why the call was rejected (for logs), empty unless Push returned kError.
  const std::string& error() const { return error_; }

 private:
  enum class State {
    kPrefix,         // matching "call:"
    kName,           // function name, up to '{'
    kObjectOpen,     // after '{': ws, '}' or a key
    kKeyStart,       // after ',' in an object: ws or a key
    kBareKey,        // inside an unquoted key
    kQuotedKeyOpen,  // matching the `<|"|>` that opens a quoted key
    kQuotedKey,      // inside a quoted key
    kAfterKey,       // after a quoted key: ws or ':'
    kValueStart,     // expecting a value (after ':' or ',' in an array)
    kArrayOpen,      // after '[': ws, ']' or a value
    kStringOpen,     // matching the `<|"|>` that opens a string value
    kString,         // inside a string value
    kBare,           // inside a number / literal
    kAfterValue,     // ws, ',' or the closing bracket of the current container
    kEndMarker,      // after the outer '}': ws, then `<tool_call|>`
    kDone,
    kError,
  };
  struct Frame {
    bool is_object;
    bool has_items;
  };

  Step Fail(std::string why);
  Step OnKeyStart(char c);
  Step OnValueStart(char c);
  Step OnAfterValue(char c);
  Step OnStringByte(char c, bool is_key);
  Step EmitKey();
  Step FinishBare();
  Step OpenContainer(bool is_object);
  Step CloseContainer(bool is_object);
  bool Utf8Accept(uint8_t b);  // incremental UTF-8 validation of key / string bytes

  int max_depth_;
  State state_ = State::kPrefix;
  size_t match_ = 0;  // bytes of the current fixed token matched so far
  std::string name_;
  bool name_complete_ = false;
  std::string json_;
  std::string key_;
  std::string bare_;
  std::vector<Frame> stack_;
  int utf8_need_ = 0;  // continuation bytes still expected
  uint8_t utf8_lo_ = 0x80, utf8_hi_ = 0xBF;
  std::string error_;
};

// Appends `bytes` to `out` as the inside of a JSON string, escaped as Python's json.dumps does with
// ensure_ascii=False. The bytes must be valid UTF-8 (callers validate).
void AppendJsonEscaped(std::string_view bytes, std::string& out);

// True when `text` is a number in JSON's grammar.
bool IsJsonNumber(std::string_view text);

}  // namespace gs
