#include "chat/jinja/unicode.h"

#include <algorithm>

#include "chat/jinja/unicode_tables.h"

namespace gs::jinja {
namespace {

bool InRanges(const tables::CodeRange* r, size_t n, char32_t c) {
  const tables::CodeRange* end = r + n;
  const tables::CodeRange* it = std::upper_bound(
      r, end, c, [](char32_t v, const tables::CodeRange& x) { return v < x.first; });
  return it != r && c <= (it - 1)->last;
}

const tables::CaseMapping* FindMapping(const tables::CaseMapping* m, size_t n, char32_t c) {
  const tables::CaseMapping* end = m + n;
  const tables::CaseMapping* it = std::lower_bound(
      m, end, c, [](const tables::CaseMapping& x, char32_t v) { return x.from < v; });
  return (it != end && it->from == c) ? it : nullptr;
}

void AppendMapped(std::u32string& out, const tables::CaseMapping* m, size_t n, char32_t c) {
  const tables::CaseMapping* hit = FindMapping(m, n, c);
  if (!hit) {
    out.push_back(c);
    return;
  }
  for (int i = 0; i < hit->count; ++i) out.push_back(hit->to[i]);
}

}  // namespace

void AppendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string EncodeUtf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendUtf8(out, c);
  return out;
}

size_t CodePointCount(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

bool IsSpace(char32_t c) { return InRanges(tables::kSpace, tables::kSpaceSize, c); }
bool IsPrintable(char32_t c) { return InRanges(tables::kPrintable, tables::kPrintableSize, c); }
bool IsAlnum(char32_t c) { return InRanges(tables::kAlnum, tables::kAlnumSize, c); }
bool IsAlpha(char32_t c) { return InRanges(tables::kAlpha, tables::kAlphaSize, c); }
bool IsDigit(char32_t c) { return InRanges(tables::kDigit, tables::kDigitSize, c); }
bool IsDecimal(char32_t c) { return InRanges(tables::kDecimal, tables::kDecimalSize, c); }
bool IsLower(char32_t c) { return InRanges(tables::kLower, tables::kLowerSize, c); }
bool IsUpper(char32_t c) { return InRanges(tables::kUpper, tables::kUpperSize, c); }
bool IsTitle(char32_t c) { return InRanges(tables::kTitle, tables::kTitleSize, c); }
bool IsLineBreak(char32_t c) { return InRanges(tables::kLineBreak, tables::kLineBreakSize, c); }
bool IsWordChar(char32_t c) { return c == U'_' || IsAlnum(c); }

void AppendUpper(std::u32string& out, char32_t c) {
  AppendMapped(out, tables::kToUpper, tables::kToUpperSize, c);
}
void AppendLower(std::u32string& out, char32_t c) {
  AppendMapped(out, tables::kToLower, tables::kToLowerSize, c);
}
void AppendTitle(std::u32string& out, char32_t c) {
  AppendMapped(out, tables::kToTitle, tables::kToTitleSize, c);
}

std::string PyUpper(std::string_view s) {
  if (IsAscii(s)) {
    std::string out(s);
    for (char& c : out) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
    return out;
  }
  std::u32string out;
  for (char32_t c : DecodeUtf8(s)) AppendUpper(out, c);
  return EncodeUtf8(out);
}

// CPython lower-cases a capital sigma to final sigma at the end of a word; handled here because
// the per-character table cannot express context.
static bool IsCasedOrIgnorable(char32_t c) { return IsLower(c) || IsUpper(c) || IsTitle(c); }

void AppendLowerInContext(std::u32string& out, std::u32string_view in, size_t i) {
  if (in[i] == 0x3A3) {
    const bool before = i > 0 && IsCasedOrIgnorable(in[i - 1]);
    const bool after = i + 1 < in.size() && IsCasedOrIgnorable(in[i + 1]);
    out.push_back(before && !after ? 0x3C2 : 0x3C3);
    return;
  }
  AppendLower(out, in[i]);
}

std::string PyLower(std::string_view s) {
  if (IsAscii(s)) {
    std::string out(s);
    for (char& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    return out;
  }
  const std::u32string in = DecodeUtf8(s);
  std::u32string out;
  for (size_t i = 0; i < in.size(); ++i) AppendLowerInContext(out, in, i);
  return EncodeUtf8(out);
}

std::string PyCapitalize(std::string_view s) {
  const std::u32string in = DecodeUtf8(s);
  std::u32string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i == 0) {
      AppendTitle(out, in[i]);
    } else {
      AppendLowerInContext(out, in, i);
    }
  }
  return EncodeUtf8(out);
}

std::string PyTitle(std::string_view s) {
  const std::u32string in = DecodeUtf8(s);
  std::u32string out;
  bool previous_cased = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const char32_t c = in[i];
    const bool cased = IsLower(c) || IsUpper(c) || IsTitle(c);
    if (previous_cased) {
      AppendLowerInContext(out, in, i);
    } else {
      AppendTitle(out, c);
    }
    previous_cased = cased;
  }
  return EncodeUtf8(out);
}

std::string PyStrip(std::string_view s, bool left, bool right) {
  const std::u32string in = DecodeUtf8(s);
  size_t b = 0, e = in.size();
  if (left) {
    while (b < e && IsSpace(in[b])) ++b;
  }
  if (right) {
    while (e > b && IsSpace(in[e - 1])) --e;
  }
  return EncodeUtf8(std::u32string_view(in).substr(b, e - b));
}

std::string PyStripChars(std::string_view s, std::string_view chars, bool left, bool right) {
  const std::u32string in = DecodeUtf8(s);
  const std::u32string set = DecodeUtf8(chars);
  auto in_set = [&](char32_t c) { return set.find(c) != std::u32string::npos; };
  size_t b = 0, e = in.size();
  if (left) {
    while (b < e && in_set(in[b])) ++b;
  }
  if (right) {
    while (e > b && in_set(in[e - 1])) --e;
  }
  return EncodeUtf8(std::u32string_view(in).substr(b, e - b));
}

bool PyIsLower(std::string_view s) {
  bool cased = false;
  for (char32_t c : DecodeUtf8(s)) {
    if (IsUpper(c) || IsTitle(c)) return false;
    if (IsLower(c)) cased = true;
  }
  return cased;
}

bool PyIsUpper(std::string_view s) {
  bool cased = false;
  for (char32_t c : DecodeUtf8(s)) {
    if (IsLower(c) || IsTitle(c)) return false;
    if (IsUpper(c)) cased = true;
  }
  return cased;
}

}  // namespace gs::jinja
