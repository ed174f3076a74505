// StreamingDetokenizer: for every sequence of up to 4 tokens over an alphabet mixing ordinary,
// special and byte-fallback tokens (complete and broken UTF-8), pushed one at a time, every piece
// is valid UTF-8 and the pieces concatenate to Tokenizer::Decode of the whole sequence, with and
// without skip_special_tokens, for streamable and non-streamable decoders.
#include <gtest/gtest.h>

#include <vector>

#include "tokenizer/streaming_detokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "unit/tokenizer_fixture.h"

namespace gs {
namespace {

using nlohmann::json;

Tokenizer Make(const json& j) {
  auto tok = Tokenizer::FromJson(j.dump(), "fixture.json");
  EXPECT_TRUE(tok.ok()) << tok.error().message;
  return std::move(tok).value();
}

// Pushes ids one by one; checks each piece is valid UTF-8 and that no piece ends inside a
// character; returns the concatenation.
std::string StreamAll(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip,
                      std::vector<std::string>* pieces = nullptr) {
  StreamingDetokenizer stream(tok, skip);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = stream.Push(id);
    EXPECT_TRUE(IsValidUtf8(piece)) << piece;
    if (pieces) pieces->push_back(piece);
    out += piece;
  }
  const std::string last = stream.Flush();
  EXPECT_TRUE(IsValidUtf8(last));
  if (pieces) pieces->push_back(last);
  return out + last;
}

std::vector<int32_t> Alphabet(const Tokenizer& tok) {
  using testing::ByteId;
  return {tok.TokenToId("a"), tok.TokenToId("\u2581the"), tok.TokenToId("\u2581"),
          tok.TokenToId("<bos>"), tok.TokenToId("<start_of_turn>"), ByteId(0xE2), ByteId(0x82),
          ByteId(0xAC), ByteId(0xF0), ByteId(0x9F), ByteId(0xA6), ByteId(0x99), ByteId(0xFF),
          ByteId('A'), 99999 /* unknown id */};
}

void CheckAllSequences(const Tokenizer& tok, size_t max_len) {
  const std::vector<int32_t> alphabet = Alphabet(tok);
  std::vector<size_t> digits;
  for (size_t len = 0; len <= max_len; ++len) {
    digits.assign(len, 0);
    while (true) {
      std::vector<int32_t> ids;
      for (size_t d : digits) ids.push_back(alphabet[d]);
      for (bool skip : {false, true}) {
        ASSERT_EQ(StreamAll(tok, ids, skip), tok.Decode(ids, skip))
            << "ids " << json(ids).dump() << " skip " << skip;
      }
      size_t k = 0;
      while (k < len && ++digits[k] == alphabet.size()) digits[k++] = 0;
      if (k == len) break;
    }
  }
}

TEST(StreamingDetokenizer, EverySequenceMatchesDecode) {
  const Tokenizer tok = Make(testing::SmallTokenizerJson());
  CheckAllSequences(tok, 4);
}

TEST(StreamingDetokenizer, HoldsBackByteRunsUntilTheyEnd) {
  const Tokenizer tok = Make(testing::SmallTokenizerJson());
  using testing::ByteId;
  // "a" + 🦙 as four byte tokens + "a": nothing of the emoji is released early.
  const std::vector<int32_t> ids = {tok.TokenToId("a"), ByteId(0xF0), ByteId(0x9F), ByteId(0xA6),
                                    ByteId(0x99), tok.TokenToId("a")};
  std::vector<std::string> pieces;
  EXPECT_EQ(StreamAll(tok, ids, false, &pieces), "a\U0001F999a");
  ASSERT_EQ(pieces.size(), 7u);
  EXPECT_EQ(pieces[0], "a");
  for (int i = 1; i <= 4; ++i) EXPECT_EQ(pieces[i], "") << i;
  EXPECT_EQ(pieces[5], "\U0001F999a");
  // A run cut off at the end comes out of Flush as HF decodes it: one U+FFFD per byte.
  std::vector<std::string> cut;
  EXPECT_EQ(StreamAll(tok, {ByteId(0xF0), ByteId(0x9F)}, false, &cut), "\uFFFD\uFFFD");
  EXPECT_EQ(cut.back(), "\uFFFD\uFFFD");
}

TEST(StreamingDetokenizer, EverySplitOfByteFallbackSequences) {
  const Tokenizer tok = Make(testing::SmallTokenizerJson());
  // Characters of every UTF-8 length, each as byte tokens between ordinary tokens, in every
  // combination of two; Decode is the reference and must be the text itself.
  for (const char* ch : {"\u00e9", "\u20ac", "\U0001F999", "\u0800", "\U0010FFFD"}) {
    for (const char* ch2 : {"", "\u00e9", "\U0001F999"}) {
      std::vector<int32_t> ids = {tok.TokenToId("\u2581the")};
      std::string expect = " the";
      for (const char* c : {ch, ch2}) {
        for (unsigned char b : std::string(c)) ids.push_back(testing::ByteId(b));
        expect += c;
      }
      ids.push_back(tok.TokenToId("a"));
      expect += "a";
      EXPECT_EQ(tok.Decode(ids), expect);
      EXPECT_EQ(StreamAll(tok, ids, false), expect);
    }
  }
}

TEST(StreamingDetokenizer, LeadingStripAfterFuse) {
  json j = testing::SmallTokenizerJson();
  j["decoder"]["decoders"].push_back(
      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  const Tokenizer tok = Make(j);
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{tok.TokenToId("\u2581the"), tok.TokenToId("\u2581the")}),
            "the the");
  CheckAllSequences(tok, 3);
}

TEST(StreamingDetokenizer, NonLocalDecoderIsReturnedByFlush) {
  json j = testing::SmallTokenizerJson();
  j["decoder"]["decoders"].push_back(
      {{"type", "Replace"}, {"pattern", {{"String", "ea"}}}, {"content", "X"}});
  const Tokenizer tok = Make(j);
  CheckAllSequences(tok, 3);
}

TEST(StreamingDetokenizer, NoDecoderJoinsWithSpaces) {
  json j = testing::SmallTokenizerJson();
  j["decoder"] = nullptr;
  const Tokenizer tok = Make(j);
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{tok.TokenToId("a"), tok.TokenToId("\u2581the")}),
            "a \u2581the");
  CheckAllSequences(tok, 3);
}

TEST(Tokenizer, InvalidUtf8InputIsRepairedToReplacementCharacters) {
  const Tokenizer tok = Make(testing::SmallTokenizerJson());
  EXPECT_EQ(tok.Encode("a\xff\xc3(b", false), tok.Encode("a\uFFFD\uFFFD(b", false));
  EXPECT_EQ(tok.Encode("\xe2\x82", false), tok.Encode("\uFFFD", false));
  EXPECT_EQ(tok.Encode("\xed\xa0\x80", false), tok.Encode("\uFFFD\uFFFD\uFFFD", false));
}

TEST(Tokenizer, SmallFixtureBasics) {
  const Tokenizer tok = Make(testing::SmallTokenizerJson());
  const std::vector<int32_t> ids = tok.Encode("the abc\u00e9<start_of_turn>", true);
  const std::vector<int32_t> expect = {2, tok.TokenToId("t"), tok.TokenToId("he"),
                                       tok.TokenToId("\u2581"), tok.TokenToId("abc"),
                                       tok.TokenToId("\u00e9"), 4};
  EXPECT_EQ(ids, expect);
  EXPECT_EQ(tok.Decode(ids), "<bos>the abc\u00e9<start_of_turn>");
  EXPECT_EQ(tok.Decode(ids, true), "the abc\u00e9");
  EXPECT_TRUE(tok.IsSpecial(2));
  EXPECT_FALSE(tok.IsSpecial(tok.TokenToId("a")));
  EXPECT_EQ(tok.IdToToken(tok.TokenToId("\u2581the")), "\u2581the");
  EXPECT_EQ(tok.TokenToId("nope"), -1);
}

}  // namespace
}  // namespace gs
