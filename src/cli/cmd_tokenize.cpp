// `gemmaserve tokenize` and `gemmaserve detokenize`: JSON-lines in, JSON-lines out, one result
// per input line, with the HF tokenizer.json of a model (the oracle tests and scripts use these).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"

namespace gs::cli {
namespace {

// Runs `handle(line_text)` for every line of `path` ("-" = stdin); stops at the first error,
// returned as "PATH line N: message".
template <typename Fn>
Status ForEachLine(const std::string& path, Fn handle) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) return MakeError(path, ": cannot open");
    in = &file;
  }
  std::string line;
  for (size_t number = 1; std::getline(*in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    Status s = handle(line);
    if (!s.ok()) return MakeError(path, " line ", number, ": ", s.error().message);
  }
  return Ok();
}

Expected<nlohmann::json> ParseLine(const std::string& line) {
  try {
    return nlohmann::json::parse(line);
  } catch (const std::exception& e) {
    return MakeError("invalid JSON: ", e.what());
  }
}

}  // namespace

int RunTokenize(int argc, char** argv) {
  CLI::App app{"Tokenize JSON strings (one per line) with a HF tokenizer.json; prints one JSON "
               "array of token ids per line."};
  std::string tokenizer_path, input = "-";
  bool add_special = false;
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json or a model directory")->required();
  app.add_option("--input", input, "JSON-lines file of strings ('-' = stdin)");
  app.add_flag("--add-special-tokens", add_special, "apply the post-processor (e.g. add <bos>)");
  CLI11_PARSE(app, argc, argv);
  auto tok = Tokenizer::Load(tokenizer_path);
  if (!tok.ok()) return Fail("tokenize", tok.error().message);
  std::string out;
  Status s = ForEachLine(input, [&](const std::string& line) -> Status {
    GS_ASSIGN_OR_RETURN(nlohmann::json j, ParseLine(line));
    if (!j.is_string()) return MakeError("expected a JSON string");
    const std::vector<int32_t> ids = tok->Encode(j.get<std::string>(), add_special);
    out = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(ids[i]);
    }
    out += "]\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    return Ok();
  });
  if (!s.ok()) return Fail("tokenize", s.error().message);
  return 0;
}

int RunDetokenize(int argc, char** argv) {
  CLI::App app{"Decode JSON arrays of token ids (one per line) with a HF tokenizer.json; prints "
               "one JSON string per line."};
  std::string tokenizer_path, input = "-";
  bool skip_special = false;
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json or a model directory")->required();
  app.add_option("--input", input, "JSON-lines file of id arrays ('-' = stdin)");
  app.add_flag("--skip-special-tokens", skip_special, "drop special tokens from the text");
  CLI11_PARSE(app, argc, argv);
  auto tok = Tokenizer::Load(tokenizer_path);
  if (!tok.ok()) return Fail("detokenize", tok.error().message);
  std::vector<int32_t> ids;
  Status s = ForEachLine(input, [&](const std::string& line) -> Status {
    GS_ASSIGN_OR_RETURN(nlohmann::json j, ParseLine(line));
    if (!j.is_array()) return MakeError("expected a JSON array of token ids");
    ids.clear();
    for (size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_number_integer() || j[i].get<int64_t>() < 0 ||
          j[i].get<int64_t>() >= static_cast<int64_t>(tok->vocab_size())) {
        return MakeError("element ", i, ": expected a token id in 0..", tok->vocab_size() - 1);
      }
      ids.push_back(static_cast<int32_t>(j[i].get<int64_t>()));
    }
    const std::string text = nlohmann::json(tok->Decode(ids, skip_special))
                                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                             "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
    return Ok();
  });
  if (!s.ok()) return Fail("detokenize", s.error().message);
  return 0;
}

}  // namespace gs::cli
