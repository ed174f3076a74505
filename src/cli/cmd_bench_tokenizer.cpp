// `gemmaserve bench-tokenizer`: load time and single-core encode throughput of our tokenizer.json
// implementation, optionally next to HF tokenizers (npm `tokenizers`, timed by
// tests/oracle/bench_hf_tokenizer.js on the same documents).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"

namespace gs::cli {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Deterministic English-like prose: common words with a Zipf-like skew, capitalised sentences,
// commas, quotes, numbers and paragraph breaks.
std::string MakeProse(size_t bytes, uint32_t seed) {
  static const char* kWords[] = {
      "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on",
      "are", "with", "as", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had",
      "by", "word", "but", "what", "some", "we", "can", "out", "other", "were", "all", "there",
      "when", "up", "use", "your", "how", "said", "an", "each", "she", "which", "do", "their",
      "time", "if", "will", "way", "about", "many", "then", "them", "write", "would", "like",
      "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more",
      "day", "could", "go", "come", "did", "number", "sound", "no", "most", "people", "my",
      "over", "know", "water", "than", "call", "first", "who", "may", "down", "side", "been",
      "now", "find", "any", "new", "work", "part", "take", "get", "place", "made", "live",
      "where", "after", "back", "little", "only", "round", "man", "year", "came", "show",
      "every", "good", "me", "give", "our", "under", "name", "very", "through", "just", "form",
      "sentence", "great", "think", "say", "help", "low", "line", "differ", "turn", "cause",
      "much", "mean", "before", "move", "right", "boy", "old", "too", "same", "tell", "does",
      "set", "three", "want", "air", "well", "also", "play", "small", "end", "put", "home",
      "read", "hand", "port", "large", "spell", "add", "even", "land", "here", "must", "big",
      "high", "such", "follow", "act", "why", "ask", "men", "change", "went", "light", "kind",
      "off", "need", "house", "picture", "try", "us", "again", "animal", "point", "mother",
      "world", "near", "build", "self", "earth", "father", "head", "stand", "own", "page",
      "should", "country", "found", "answer", "school", "grow", "study", "still", "learn",
      "plant", "cover", "food", "sun", "four", "between", "state", "keep", "eye", "never",
      "last", "let", "thought", "city", "tree", "cross", "farm", "hard", "start", "might",
      "story", "saw", "far", "sea", "draw", "left", "late", "run", "while", "press", "close",
      "night", "real", "life", "few", "north", "government", "responsibility", "extraordinary",
      "nevertheless", "circumstances", "understanding", "Mississippi", "unquestionably"};
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::string out;
  out.reserve(bytes + 256);
  bool sentence_start = true;
  size_t in_paragraph = 0;
  while (out.size() < bytes) {
    const auto k = static_cast<size_t>(kCount * std::pow(u(rng), 2.2));
    std::string w = kWords[std::min(k, kCount - 1)];
    if (u(rng) < 0.02) w = std::to_string(static_cast<int>(u(rng) * 2000));
    if (sentence_start) w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
    if (!sentence_start) out += ' ';
    if (u(rng) < 0.01) w = "\"" + w + "\"";
    out += w;
    sentence_start = false;
    const double r = u(rng);
    if (r < 0.06) {
      out += r < 0.05 ? "." : r < 0.055 ? "?" : "!";
      sentence_start = true;
      if (++in_paragraph > 5 && u(rng) < 0.3) {
        out += "\n\n";
        in_paragraph = 0;
        continue;
      }
      out += ' ';
      out.pop_back();
    } else if (r < 0.12) {
      out += ',';
    } else if (r < 0.125) {
      out += ';';
    }
  }
  return out;
}

// Cuts text into documents of about `size` bytes at paragraph or word boundaries.
std::vector<std::string> SplitDocuments(const std::string& text, size_t size) {
  std::vector<std::string> docs;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = std::min(text.size(), start + size);
    if (end < text.size()) {
      const size_t space = text.find(' ', end);
      end = space == std::string::npos ? text.size() : space;
    }
    docs.push_back(text.substr(start, end - start));
    start = end;
  }
  return docs;
}

}  // namespace

int RunBenchTokenizer(int argc, char** argv) {
  CLI::App app{"Benchmark tokenizer.json loading and encoding (one core), optionally against "
               "HF tokenizers via node."};
  std::string tokenizer_path, input, hf_script = "tests/oracle/bench_hf_tokenizer.js";
  size_t megabytes = 8, doc_bytes = 4096;
  int repeats = 3;
  bool compare_hf = false;
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json or a model directory")->required();
  app.add_option("--input", input, "text file to encode (default: generated English prose)");
  app.add_option("--megabytes", megabytes, "size of the generated prose")->default_val(8);
  app.add_option("--doc-bytes", doc_bytes, "the text is encoded as documents of about this size")
      ->default_val(4096);
  app.add_option("--repeats", repeats, "timed passes; the best is reported")->default_val(3);
  app.add_flag("--compare-hf", compare_hf, "also time HF tokenizers (needs node and "
               "tests/oracle/node_modules; run from the repository root)");
  app.add_option("--hf-script", hf_script, "the node timing script");
  CLI11_PARSE(app, argc, argv);

  std::string text;
  if (!input.empty()) {
    auto t = ReadTextFile(input);
    if (!t.ok()) return Fail("bench-tokenizer", t.error().message);
    text = std::move(t).value();
  } else {
    text = MakeProse(megabytes << 20, 1234);
  }
  const std::vector<std::string> docs = SplitDocuments(text, std::max<size_t>(doc_bytes, 64));

  auto start = std::chrono::steady_clock::now();
  auto tok = Tokenizer::Load(tokenizer_path);
  const double load_s = Seconds(start);
  if (!tok.ok()) return Fail("bench-tokenizer", tok.error().message);

  size_t tokens = 0;
  double best = 1e30;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    start = std::chrono::steady_clock::now();
    tokens = 0;
    for (const std::string& d : docs) tokens += tok->Encode(d, true).size();
    best = std::min(best, Seconds(start));
  }
  std::vector<std::vector<int32_t>> all_ids;
  for (const std::string& d : docs) all_ids.push_back(tok->Encode(d, false));
  start = std::chrono::steady_clock::now();
  size_t decoded = 0;
  for (const auto& ids : all_ids) decoded += tok->Decode(ids).size();
  const double decode_s = Seconds(start);
  const double mb = static_cast<double>(text.size()) / 1e6;

  double hf_load = -1, hf_encode = -1;
  size_t hf_tokens = 0;
  if (compare_hf) {
    const auto docs_file = std::filesystem::temp_directory_path() /
                           ("gs_bench_docs_" + std::to_string(::getpid()) + ".jsonl");
    {
      std::ofstream f(docs_file, std::ios::binary);
      for (const std::string& d : docs) f << nlohmann::json(d).dump() << "\n";
    }
    const std::string cmd = "node " + hf_script + " '" + tokenizer_path + "' '" +
                            docs_file.string() + "' " + std::to_string(repeats);
    std::string result;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof(buf), p)) > 0) result.append(buf, n);
      pclose(p);
    }
    std::filesystem::remove(docs_file);
    try {
      const auto j = nlohmann::json::parse(result);
      hf_load = j.at("load_s").get<double>();
      hf_encode = j.at("encode_s").get<double>();
      hf_tokens = j.at("tokens").get<size_t>();
    } catch (const std::exception& e) {
      return Fail("bench-tokenizer", "the HF timing script failed (" + cmd + "): " + result);
    }
  }

  std::printf("input: %.2f MB in %zu documents (%s), %zu tokens\n", mb, docs.size(),
              input.empty() ? "generated English prose" : input.c_str(), tokens);
  std::printf("| %-30s | %12s | %14s |\n", "", "gemmaserve", compare_hf ? "HF tokenizers" : "");
  std::printf("|%s|%s|%s|\n", std::string(32, '-').c_str(), std::string(14, '-').c_str(),
              std::string(16, '-').c_str());
  auto row = [&](const char* name, double ours, double hf, const char* fmt) {
    char a[32], b[32] = "";
    std::snprintf(a, sizeof(a), fmt, ours);
    if (hf >= 0) std::snprintf(b, sizeof(b), fmt, hf);
    std::printf("| %-30s | %12s | %14s |\n", name, a, b);
  };
  row("load tokenizer.json (s)", load_s, hf_load, "%.3f");
  row("encode, 1 core (MB/s)", mb / best, hf_encode > 0 ? mb / hf_encode : -1, "%.1f");
  row("encode (Mtokens/s)", tokens / best / 1e6, hf_encode > 0 ? hf_tokens / hf_encode / 1e6 : -1,
      "%.2f");
  row("decode (MB/s of text)", static_cast<double>(decoded) / 1e6 / decode_s, -1, "%.1f");
  if (compare_hf && hf_tokens != tokens) {
    std::printf("WARNING: token counts differ (ours %zu, HF %zu)\n", tokens, hf_tokens);
  }
  return 0;
}

}  // namespace gs::cli
