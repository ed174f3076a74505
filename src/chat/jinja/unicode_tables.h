// Character-class and case-mapping tables generated from CPython (see
// scripts/gen_jinja_unicode_tables.py): the interpreter must transform text exactly as CPython does.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gs::jinja::tables {

struct CodeRange {
  uint32_t first;
  uint32_t last;
};

// One code point mapped to 1..3 code points (e.g. U+00DF 'ß' upper-cases to "SS").
struct CaseMapping {
  uint32_t from;
  uint8_t count;
  uint32_t to[3];
};

extern const CodeRange kSpace[];
extern const size_t kSpaceSize;
extern const CodeRange kPrintable[];
extern const size_t kPrintableSize;
extern const CodeRange kAlnum[];
extern const size_t kAlnumSize;
extern const CodeRange kAlpha[];
extern const size_t kAlphaSize;
extern const CodeRange kDigit[];
extern const size_t kDigitSize;
extern const CodeRange kDecimal[];
extern const size_t kDecimalSize;
extern const CodeRange kLower[];
extern const size_t kLowerSize;
extern const CodeRange kUpper[];
extern const size_t kUpperSize;
extern const CodeRange kTitle[];
extern const size_t kTitleSize;
extern const CodeRange kLineBreak[];
extern const size_t kLineBreakSize;
extern const CaseMapping kToUpper[];
extern const size_t kToUpperSize;
extern const CaseMapping kToLower[];
extern const size_t kToLowerSize;
extern const CaseMapping kToTitle[];
extern const size_t kToTitleSize;

}  // namespace gs::jinja::tables
