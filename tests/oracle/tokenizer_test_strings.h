// Seeded generator of tokenizer test strings: every Unicode plane, emoji sequences, CJK, RTL,
// code, whitespace runs, newlines, control characters, and text around special-token strings.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/unicode.h"

namespace gs::testing {

inline std::string Cp(char32_t cp) {
  std::string s;
  AppendUtf8(cp, &s);
  return s;
}

class TestStringGenerator {
 public:
  explicit TestStringGenerator(uint32_t seed) : rng_(seed) {}

  std::string Next() {
    std::string s;
    const int parts = 1 + Uniform(0, 5);
    for (int i = 0; i < parts; ++i) s += Part();
    if (Uniform(0, 200) == 0) {  // occasionally long
      const std::string unit = s.empty() ? "x y " : s;
      while (s.size() < 3000) s += unit;
    }
    return s;
  }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) { return v[Uniform(0, static_cast<int>(v.size()) - 1)]; }

  char32_t AnyScalar() {
    // All planes: BMP, SMP, SIP, TIP, SSP (tags), private use planes; never surrogates.
    static const std::vector<std::pair<char32_t, char32_t>> kRanges = {
        {0x20, 0x7E},      {0xA0, 0x24F},     {0x370, 0x52F},    {0x590, 0x6FF},
        {0x900, 0xDFF},    {0xE00, 0xEFF},    {0x1100, 0x11FF},  {0x2000, 0x2BFF},
        {0x3000, 0x30FF},  {0x4E00, 0x9FFF},  {0xAC00, 0xD7A3},  {0xE000, 0xF8FF},
        {0xF900, 0xFFFD},  {0x10000, 0x1FFFF}, {0x20000, 0x2FFFF}, {0x30000, 0x3134F},
        {0xE0000, 0xE01EF}, {0xF0000, 0xFFFFD}, {0x100000, 0x10FFFD}, {0x0, 0x1F},
        {0x7F, 0x9F},      {0xFFFE, 0xFFFF}};
    const auto& [lo, hi] = Pick(kRanges);
    return static_cast<char32_t>(Uniform(static_cast<int>(lo), static_cast<int>(hi)));
  }

  std::string Part() {
    static const std::vector<std::string> kWords = {
        "Hello", "world", "the", "quick", "brown", "fox", "jumps", "über", "café", "naïve",
        "Straße", "déjà", "vu", "12345", "3.14159", "don't", "I'm", "e-mail", "C++", "snake_case",
        "camelCase", "URL:", "https://example.com/a?b=c&d=e", "foo@bar.com", "#include", "λ",
        "Привет", "мир", "Ελληνικά", "עברית", "العربية", "مرحبا", "हिन्दी", "ภาษาไทย", "中文",
        "日本語", "한국어", "ひらがな", "カタカナ", "漢字", "你好，世界", "😀", "👍🏽", "👨‍👩‍👧‍👦",
        "🇯🇵", "🇺🇸", "✅", "❤️", "🏳️‍🌈", "🦙", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𠜎𠜱", "▁", "▁▁", "\u00A0", "\u200B",
        "\u200D", "\uFEFF", "\u3000", "\u2028", "\r\n", "\t", "\n", "\n\n", "\n\n\n", "  ", "    ",
        "\t\t", " \n ", "½", "…", "—", "“quoted”", "«»", "\\n", "\\u0041"};
    static const std::vector<std::string> kSpecials = {
        "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
        "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<|turn>", "<turn|>",
        "<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
        "<tool_response|>", "<|\"|>", "<|think|>", "<|tool>", "<tool|>", "<|image>", "<|image|>",
        "<image|>", "<|audio>", "<audio|>", "<|video|>", "<unused0>", "<unused41>", "<div>",
        "</div>", "<b>", "<html>", "[multimodal]", "<bos", "bos>", "<|turn", "<<bos>>", "<0x41>",
        "<0xE2>", "<", ">", "<>", "</"};
    static const std::vector<std::string> kCode = {
        "def f(x):\n    return x * 2\n", "int main() {\n\treturn 0;\n}\n",
        "for (int i = 0; i < n; ++i) {\n  a[i] += b[i];\n}", "SELECT * FROM t WHERE id = 1;",
        "<div class=\"a\">\n  <p>text</p>\n</div>", "{\"key\": [1, 2, {\"n\": null}]}",
        "    if x:\n        pass\n", "$ ls -la | grep '^d'", "x<y && y>z", "a<b>c</b>"};
    switch (Uniform(0, 9)) {
      case 0: {
        std::string s;
        for (int i = Uniform(1, 12); i > 0; --i) s += Cp(AnyScalar());
        return s;
      }
      case 1: return Pick(kSpecials);
      case 2: return Pick(kCode);
      case 3: {  // whitespace runs
        static const std::vector<std::string> kWs = {" ", "\t", "\n", "\r", "\u00A0", "\u3000",
                                                     "\r\n", "\v", "\f", "\u2003"};
        std::string s;
        for (int i = Uniform(1, 40); i > 0; --i) s += Pick(kWs);
        return s;
      }
      case 4: {  // control characters
        std::string s;
        for (int i = Uniform(1, 6); i > 0; --i) s += Cp(static_cast<char32_t>(Uniform(0, 0x1F)));
        return s;
      }
      case 5: {  // special token glued to words
        return Pick(kWords) + Pick(kSpecials) + Pick(kWords);
      }
      default: {  // words with separators
        std::string s;
        static const std::vector<std::string> kSeps = {" ", " ", " ", "  ", "\n", ", ", ". ", "",
                                                       "\t", "-", "_", "/"};
        for (int i = Uniform(1, 10); i > 0; --i) s += Pick(kWords) + Pick(kSeps);
        return s;
      }
    }
  }

  std::mt19937 rng_;
};

}  // namespace gs::testing
