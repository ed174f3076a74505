// UTF-8 and character-class helpers with CPython semantics (str.isspace, str.upper, ...).
// Strings are kept as UTF-8 everywhere; Python indexes strings by code point, so operations that
// index or measure decode to UTF-32 first.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gs::jinja {

// Decodes UTF-8; an invalid byte becomes U+FFFD (inputs are validated JSON or template text).
std::u32string DecodeUtf8(std::string_view s);
std::string EncodeUtf8(std::u32string_view s);
void AppendUtf8(std::string& out, char32_t cp);
// Number of code points (Python len()).
size_t CodePointCount(std::string_view s);
bool IsAscii(std::string_view s);

bool IsSpace(char32_t c);      // str.isspace / regex \s
bool IsPrintable(char32_t c);  // str.isprintable (decides repr() escaping)
bool IsAlnum(char32_t c);      // str.isalnum (regex \w minus '_')
bool IsAlpha(char32_t c);
bool IsDigit(char32_t c);
bool IsDecimal(char32_t c);
bool IsLower(char32_t c);
bool IsUpper(char32_t c);
bool IsTitle(char32_t c);      // category Lt
bool IsLineBreak(char32_t c);  // str.splitlines boundaries
bool IsWordChar(char32_t c);   // regex \w

// Full case mappings (one code point may map to several).
void AppendUpper(std::u32string& out, char32_t c);
void AppendLower(std::u32string& out, char32_t c);
void AppendTitle(std::u32string& out, char32_t c);
// Lower-cases in[i], applying CPython's final-sigma rule for U+03A3.
void AppendLowerInContext(std::u32string& out, std::u32string_view in, size_t i);

std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::string PyCapitalize(std::string_view s);  // str.capitalize
std::string PyTitle(std::string_view s);       // str.title
std::string PyStrip(std::string_view s, bool left, bool right);
std::string PyStripChars(std::string_view s, std::string_view chars, bool left, bool right);
bool PyIsLower(std::string_view s);
bool PyIsUpper(std::string_view s);

}  // namespace gs::jinja
