// safetensors reader and writer: round trips through the writer, a file assembled byte by byte
// here (independent of the writer), every class of malformed header with the error naming the
// file and tensor, and a seeded mutation fuzz loop (also run under ASan + UBSan).
#include "model/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace gs {
namespace {

namespace fs = std::filesystem;

// The dtype table of the safetensors format (name, bytes per element), written out from the
// format's documentation rather than taken from our table.
struct SpecDType {
  DType dtype;
  const char* name;
  size_t size;
};
const SpecDType kSpec[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},          {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2},        {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},   {DType::kI64, "I64", 8},        {DType::kU64, "U64", 8},
    {DType::kF16, "F16", 2},   {DType::kBF16, "BF16", 2},      {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},   {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
};

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "gs_safetensors_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  static void WriteBytes(const std::string& path, const std::string& bytes) {
    // A fresh file rather than a truncated one: ext4 flushes a truncated-and-rewritten file to
    // disk on close, which would make the fuzz loop wait on the disk thousands of times.
    fs::remove(path);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << path;
  }

  static std::string ReadBytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // 8-byte little-endian length, header text, data: the file format assembled by hand.
  static std::string Assemble(const std::string& header, const std::string& data,
                              uint64_t declared_len) {
    std::string out;
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((declared_len >> (8 * i)) & 0xff));
    return out + header + data;
  }
  static std::string Assemble(const std::string& header, const std::string& data) {
    return Assemble(header, data, header.size());
  }

  // Writes `bytes`, opens it, and expects an error naming the file and every `parts` substring.
  void ExpectError(const std::string& bytes, const std::vector<std::string>& parts) {
    const std::string path = Path("bad.safetensors");
    WriteBytes(path, bytes);
    auto file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok()) << "accepted a bad file; expected error with " << parts[0];
    const std::string& msg = file.error().message;
    EXPECT_NE(msg.find(path), std::string::npos) << "error does not name the file: " << msg;
    for (const std::string& part : parts) {
      EXPECT_NE(msg.find(part), std::string::npos) << "missing '" << part << "' in: " << msg;
    }
  }

  // A header with one tensor "t" whose entry is `entry`, and `data_size` bytes of data.
  void ExpectEntryError(const std::string& entry, size_t data_size,
                        const std::vector<std::string>& parts) {
    std::vector<std::string> with_name = parts;
    with_name.push_back("tensor 't'");
    ExpectError(Assemble("{\"t\":" + entry + "}", std::string(data_size, '\x01')), with_name);
  }

  std::string dir_;
};

TEST_F(SafetensorsTest, DTypeNamesAndSizesMatchTheFormat) {
  for (const SpecDType& d : kSpec) {
    EXPECT_STREQ(DTypeName(d.dtype), d.name);
    EXPECT_EQ(DTypeSize(d.dtype), d.size) << d.name;
    auto parsed = ParseDType(d.name);
    ASSERT_TRUE(parsed.ok()) << d.name;
    EXPECT_EQ(*parsed, d.dtype);
  }
  for (const char* bad : {"bf16", "F4", "F8_E8M0", "", "FLOAT"}) {
    auto parsed = ParseDType(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.error().message.find(StrCat("'", bad, "'")), std::string::npos)
        << parsed.error().message;
  }
}

TEST_F(SafetensorsTest, WriterRoundTripsEveryDtypeAndShape) {
  std::mt19937 rng(7);
  std::vector<TensorToWrite> tensors;
  for (const SpecDType& d : kSpec) {
    TensorToWrite t{StrCat("w.", d.name), d.dtype, {3, 5}, {}};
    t.bytes.resize(15 * d.size);
    for (uint8_t& b : t.bytes) b = static_cast<uint8_t>(rng());
    tensors.push_back(std::move(t));
  }
  tensors.push_back({"scalar", DType::kF32, {}, {0, 0, 0x80, 0x3f}});  // 1.0f
  tensors.push_back({"empty", DType::kBF16, {0, 7}, {}});
  tensors.push_back({"empty_tail", DType::kF64, {4, 0, 2}, {}});
  tensors.push_back({"odd", DType::kU8, {3}, {1, 2, 3}});  // leaves later data unaligned
  tensors.push_back({"after_odd", DType::kF32, {2}, {1, 2, 3, 4, 5, 6, 7, 8}});
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "é ü"}};
  const std::string path = Path("rt.safetensors");
  WriteBytes(path, "stale contents to be replaced");
  ASSERT_TRUE(WriteSafetensors(path, tensors, metadata).ok());
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.error().message;
  EXPECT_EQ(file->metadata(), metadata);
  ASSERT_EQ(file->tensors().size(), tensors.size());
  for (const TensorToWrite& t : tensors) {
    const auto it = file->tensors().find(t.name);
    ASSERT_NE(it, file->tensors().end()) << t.name;
    const TensorView& v = it->second;
    EXPECT_EQ(v.name, t.name);
    EXPECT_EQ(v.dtype, t.dtype) << t.name;
    EXPECT_EQ(v.shape, t.shape) << t.name;
    EXPECT_EQ(v.file, path);
    ASSERT_EQ(v.nbytes, t.bytes.size()) << t.name;
    EXPECT_TRUE(std::equal(t.bytes.begin(), t.bytes.end(), v.data)) << t.name;
  }
  EXPECT_EQ(file->tensors().at("scalar").numel(), 1);
  EXPECT_EQ(file->tensors().at("scalar").ShapeString(), "[]");
  EXPECT_EQ(file->tensors().at("empty").numel(), 0);
  EXPECT_EQ(file->tensors().at("w.BF16").ShapeString(), "[3, 5]");

  // The layout, checked with a separate JSON parse: 8-aligned space-padded header, and each
  // tensor's bytes at the offsets the header states.
  const std::string raw = ReadBytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = raw.substr(8, n);
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  const auto j = nlohmann::json::parse(header);
  size_t total = 0;
  for (const TensorToWrite& t : tensors) {
    const uint64_t begin = j[t.name]["data_offsets"][0], end = j[t.name]["data_offsets"][1];
    ASSERT_EQ(end - begin, t.bytes.size());
    EXPECT_EQ(raw.substr(8 + n + begin, end - begin), std::string(t.bytes.begin(), t.bytes.end()))
        << t.name;
    total += t.bytes.size();
  }
  EXPECT_EQ(raw.size(), 8 + n + total);
}

TEST_F(SafetensorsTest, WriterRejectsBadInputWithoutLeavingFiles) {
  const std::string path = Path("w.safetensors");
  auto bad_size = WriteSafetensors(path, {{"x", DType::kF32, {2}, {1, 2, 3}}});
  ASSERT_FALSE(bad_size.ok());
  EXPECT_NE(bad_size.error().message.find("'x'"), std::string::npos);
  auto dup = WriteSafetensors(path, {{"x", DType::kU8, {1}, {1}}, {"x", DType::kU8, {1}, {2}}});
  ASSERT_FALSE(dup.ok());
  auto neg = WriteSafetensors(path, {{"x", DType::kU8, {-1}, {}}});
  ASSERT_FALSE(neg.ok());
  auto no_dir = WriteSafetensors(Path("missing_dir/w.safetensors"), {});
  ASSERT_FALSE(no_dir.ok());
  EXPECT_NE(no_dir.error().message.find("missing_dir"), std::string::npos);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(SafetensorsTest, ReadsHandBuiltFileWithUnalignedData) {
  // Entries out of offset order, keys in unusual order, whitespace, a 7-byte header (so the data
  // section itself is unaligned), and an F32 tensor at data offset 1.
  const std::string header =
      " {\"b\" : {\"data_offsets\":[1,9],\"shape\":[2],\"dtype\":\"F32\"},\n"
      "  \"__metadata__\": {\"k\": \"v\"},"
      "  \"a\": {\"dtype\":\"U8\",\"shape\":[1,1],\"data_offsets\":[0,1]},"
      "  \"z\": {\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[9,9]}} ";
  std::string data = "\x2a";
  const float values[2] = {1.5f, -2.0f};
  data.append(reinterpret_cast<const char*>(values), sizeof(values));
  data += "trailing bytes nobody owns";
  const std::string path = Path("hand.safetensors");
  WriteBytes(path, Assemble(header, data));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.error().message;
  EXPECT_EQ(file->metadata().at("k"), "v");
  ASSERT_EQ(file->tensors().size(), 3u);
  const TensorView& a = file->tensors().at("a");
  EXPECT_EQ(a.dtype, DType::kU8);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(a.data[0], 0x2a);
  const TensorView& b = file->tensors().at("b");
  EXPECT_EQ(b.dtype, DType::kF32);
  ASSERT_EQ(b.nbytes, 8u);
  EXPECT_EQ(b.data, a.data + 1);
  float got[2];
  std::memcpy(got, b.data, sizeof(got));
  EXPECT_EQ(got[0], 1.5f);
  EXPECT_EQ(got[1], -2.0f);
  EXPECT_EQ(file->tensors().at("z").nbytes, 0u);
}

TEST_F(SafetensorsTest, EmptyHeaderObjectIsAValidFileWithNoTensors) {
  WriteBytes(Path("e.safetensors"), Assemble("{}", ""));
  auto file = SafetensorsFile::Open(Path("e.safetensors"));
  ASSERT_TRUE(file.ok()) << file.error().message;
  EXPECT_TRUE(file->tensors().empty());
}

TEST_F(SafetensorsTest, RejectsTruncatedAndBadHeaderLengths) {
  ExpectError("", {"shorter than"});
  ExpectError("\x02\0\0\0", {"shorter than"});
  ExpectError(Assemble("{}", "", 1000), {"header length 1000", "past the end"});
  ExpectError(Assemble("{}", "", ~0ull), {"exceeds the limit"});
  ExpectError(Assemble("{}", "", 100'000'001), {"exceeds the limit"});
  ExpectError(Assemble("", ""), {"header"});  // zero-length header is not JSON
}

TEST_F(SafetensorsTest, RejectsBadJson) {
  ExpectError(Assemble("{\"a\": ", ""), {"header", "parse error"});
  ExpectError(Assemble("{\"a\": 1,}", ""), {"header", "parse error"});
  ExpectError(Assemble("{\"t\": {}} garbage", ""), {"parse error"});
  ExpectError(Assemble("{\"t\": \"\xff\xfe\"}", ""), {"parse error"});  // invalid UTF-8
}

TEST_F(SafetensorsTest, RejectsDeepNestingWithoutStackOverflow) {
  const int kDepth = 10000;
  ExpectError(Assemble(std::string(kDepth, '[') + std::string(kDepth, ']'), ""),
              {"nested deeper than 64"});
  std::string objects;
  for (int i = 0; i < kDepth; ++i) objects += "{\"a\":";
  objects += "1" + std::string(kDepth, '}');
  ExpectError(Assemble(objects, ""), {"nested deeper than 64"});
  // Unterminated deep nesting too.
  ExpectError(Assemble(std::string(kDepth, '['), ""), {"header"});
}

TEST_F(SafetensorsTest, RejectsNonObjectTopLevel) {
  ExpectError(Assemble("[1, 2]", ""), {"must be a JSON object", "array"});
  ExpectError(Assemble("\"hello\"", ""), {"must be a JSON object", "string"});
  ExpectError(Assemble("null", ""), {"must be a JSON object"});
}

TEST_F(SafetensorsTest, RejectsBadOffsets) {
  ExpectEntryError(R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})", 3,
                   {"past the data section"});
  ExpectEntryError(R"({"dtype":"U8","shape":[2],"data_offsets":[4,2]})", 8, {"before begin"});
  ExpectEntryError(R"({"dtype":"U8","shape":[0],"data_offsets":[9,9]})", 8,
                   {"past the data section"});
  ExpectEntryError(R"({"dtype":"U8","shape":[1],"data_offsets":[0]})", 8, {"data_offsets"});
  ExpectEntryError(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1,2]})", 8, {"data_offsets"});
  ExpectEntryError(R"({"dtype":"U8","shape":[1],"data_offsets":[-1,0]})", 8, {"negative"});
  ExpectEntryError(R"({"dtype":"U8","shape":[1],"data_offsets":[0.0,1]})", 8, {"not an integer"});
  ExpectEntryError(R"({"dtype":"U8","shape":[1],"data_offsets":"0,1"})", 8, {"data_offsets"});
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  const std::string header = R"({"first":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("second":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}})";
  ExpectError(Assemble(header, std::string(16, '\0')), {"'first'", "'second'", "overlaps"});
  // Same range twice.
  const std::string same = R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                           R"("y":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})";
  ExpectError(Assemble(same, std::string(4, '\0')), {"'x'", "'y'", "overlaps"});
  // Empty tensors own no bytes: one inside another's range is fine.
  const std::string empty_inside = R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                   R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[2,2]}})";
  WriteBytes(Path("ok.safetensors"), Assemble(empty_inside, std::string(4, '\0')));
  EXPECT_TRUE(SafetensorsFile::Open(Path("ok.safetensors")).ok());
}

TEST_F(SafetensorsTest, RejectsSizeMismatch) {
  ExpectEntryError(R"({"dtype":"BF16","shape":[2,3],"data_offsets":[0,6]})", 16,
                   {"span 6 bytes", "needs 12"});
  ExpectEntryError(R"({"dtype":"F32","shape":[],"data_offsets":[0,8]})", 16,
                   {"span 8 bytes", "needs 4"});
}

TEST_F(SafetensorsTest, RejectsUnknownDtype) {
  ExpectEntryError(R"({"dtype":"F4","shape":[2],"data_offsets":[0,1]})", 8, {"unknown dtype 'F4'"});
  ExpectEntryError(R"({"dtype":7,"shape":[2],"data_offsets":[0,1]})", 8, {"'dtype'"});
}

TEST_F(SafetensorsTest, RejectsBadShapeDims) {
  const auto entry = [](const std::string& shape) {
    return R"({"dtype":"U8","shape":)" + shape + R"(,"data_offsets":[0,1]})";
  };
  ExpectEntryError(entry("[-1]"), 8, {"shape[0]", "negative"});
  ExpectEntryError(entry("[1, 2.5]"), 8, {"shape[1]", "not an integer"});
  ExpectEntryError(entry("[1.0]"), 8, {"shape[0]", "not an integer"});
  ExpectEntryError(entry("[1e30]"), 8, {"shape[0]", "not an integer"});
  ExpectEntryError(entry("[99999999999999999999999]"), 8, {"shape[0]", "not an integer"});
  ExpectEntryError(entry("[18446744073709551615]"), 8, {"shape[0]", "too large"});
  ExpectEntryError(entry("[4294967296, 4294967296, 4]"), 8, {"overflows"});
  ExpectEntryError(entry("[3037000500, 3037000500]"), 8, {"overflows"});  // > int64 elements
  ExpectEntryError(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,1]})", 8,
                   {"byte size overflows"});
  ExpectEntryError(entry("[\"1\"]"), 8, {"shape[0]", "non-negative integer"});
  ExpectEntryError(entry("{}"), 8, {"'shape' must be an array"});
}

TEST_F(SafetensorsTest, RejectsMissingAndUnknownKeys) {
  ExpectEntryError(R"({"shape":[1],"data_offsets":[0,1]})", 8, {"missing key 'dtype'"});
  ExpectEntryError(R"({"dtype":"U8","data_offsets":[0,1]})", 8, {"missing key 'shape'"});
  ExpectEntryError(R"({"dtype":"U8","shape":[1]})", 8, {"missing key 'data_offsets'"});
  ExpectEntryError(R"({"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1})", 8,
                   {"unknown key 'x'"});
  ExpectEntryError(R"([1])", 8, {"must be an object"});
  ExpectError(
      Assemble(R"({"t":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"),
      {"duplicate key 'dtype'", "'t'"});
}

TEST_F(SafetensorsTest, RejectsDuplicateTensorNames) {
  const std::string header = R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
  ExpectError(Assemble(header, "ab"), {"duplicate key 't'"});
}

TEST_F(SafetensorsTest, RejectsNonStringMetadata) {
  ExpectError(Assemble(R"({"__metadata__":{"a":"x","b":1}})", ""),
              {"__metadata__", "'b'", "must be a string"});
  ExpectError(Assemble(R"({"__metadata__":{"a":{"nested":"x"}}})", ""),
              {"__metadata__", "'a'", "must be a string"});
  ExpectError(Assemble(R"({"__metadata__":["a"]})", ""), {"__metadata__", "must be an object"});
}

// Random mutations of a valid file: every Open must return ok or a clean error, and an accepted
// file must describe tensors that fit its data section without overlapping.
TEST_F(SafetensorsTest, MutationFuzzNeverCrashes) {
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
                             R"("b":{"dtype":"F32","shape":[],"data_offsets":[12,16]},)"
                             R"("c":{"dtype":"U8","shape":[0],"data_offsets":[16,16]},)"
                             R"("d":{"dtype":"F8_E4M3","shape":[5],"data_offsets":[16,21]}})";
  const std::string data(21, '\x5a');
  const char* tokens[] = {
      "{",         "}",    "[",  "]",  ",",      ":",      "\"",      "\\u0000",
      "\\",        "null", "[]", "{}", "\"F4\"", "\"U8\"", "\"F64\"", "\"__metadata__\"",
      "\"shape\"", "true"};
  const char* numbers[] = {"0",
                           "1",
                           "2",
                           "5",
                           "12",
                           "16",
                           "21",
                           "22",
                           "-1",
                           "-0",
                           "1.5",
                           "1e30",
                           "4294967296",
                           "9223372036854775807",
                           "18446744073709551615",
                           "18446744073709551616",
                           "3037000500"};
  std::mt19937 rng(20240611);
  const std::string path = Path("fuzz.safetensors");
  int accepted = 0, tensor_errors = 0;
  const int kIterations = 4000;
  for (int iter = 0; iter < kIterations; ++iter) {
    // Mutate the header text, then frame it with its true length so that many mutants still
    // parse as JSON and reach the semantic checks.
    std::string h = header;
    const int mutations = 1 + static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations && !h.empty(); ++m) {
      const size_t pos = rng() % h.size();
      switch (rng() % 5) {
        case 0:
          h[pos] = static_cast<char>(rng());
          break;
        case 1:
          h[pos] = "{}[],:\"0123456789-.eE "[rng() % 22];
          break;
        case 2:
          h.erase(pos, 1 + rng() % 8);
          break;
        case 3:
          h.insert(pos, tokens[rng() % std::size(tokens)]);
          break;
        default: {  // replace a run of digits with an interesting number
          const size_t d = h.find_first_of("0123456789", pos);
          if (d == std::string::npos) break;
          const size_t e = h.find_first_not_of("0123456789", d);
          h.replace(d, e - d, numbers[rng() % std::size(numbers)]);
        }
      }
    }
    std::string bytes = Assemble(h, data);
    // Sometimes corrupt the framing too: the length field, the data size, truncation.
    switch (rng() % 6) {
      case 0:
        bytes[rng() % 8] = static_cast<char>(rng());
        break;
      case 1:
        bytes.resize(rng() % bytes.size());
        break;
      case 2:
        bytes.resize(bytes.size() - 1 - rng() % data.size());
        break;
      case 3:
        bytes += std::string(1 + rng() % 9, '\x01');
        break;
      default:
        break;
    }
    WriteBytes(path, bytes);
    auto file = SafetensorsFile::Open(path);
    if (!file.ok()) {
      ASSERT_NE(file.error().message.find(path), std::string::npos) << file.error().message;
      if (file.error().message.find("tensor '") != std::string::npos) ++tensor_errors;
      continue;
    }
    ++accepted;
    // Accepted: the tensors' byte ranges are disjoint and all fit within the file.
    std::vector<std::pair<const uint8_t*, size_t>> ranges;
    size_t total = 0;
    for (const auto& [name, v] : file->tensors()) {
      ASSERT_EQ(v.nbytes, static_cast<size_t>(v.numel()) * DTypeSize(v.dtype)) << name;
      if (v.nbytes) ranges.emplace_back(v.data, v.nbytes);
      total += v.nbytes;
    }
    ASSERT_LE(total, bytes.size());
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) {
      ASSERT_GE(ranges[i].first, ranges[i - 1].first + ranges[i - 1].second);
    }
    if (!ranges.empty()) {
      ASSERT_LE(
          static_cast<size_t>(ranges.back().first + ranges.back().second - ranges.front().first),
          bytes.size());
    }
  }
  std::printf("fuzz: %d of %d mutated files accepted, %d rejected by a tensor check\n", accepted,
              kIterations, tensor_errors);
  // Some mutations (whitespace, metadata text) leave a valid file; most break it.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, kIterations);
}

}  // namespace
}  // namespace gs
