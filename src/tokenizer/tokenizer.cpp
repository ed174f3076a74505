#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "tokenizer/json_cursor.h"
#include "tokenizer/unicode.h"
#include "util/mapped_file.h"

namespace gs {
namespace {

// Prefixes the source file to messages that do not name it yet.
Error WithSource(const std::string& source, Error e) {
  if (!StartsWith(e.message, source + ":")) e.message = source + ": " + e.message;
  return e;
}

Expected<nlohmann::json> ReadComponent(JsonCursor& c, const std::string& path) {
  std::string_view raw;
  GS_RETURN_IF_ERROR(c.RawValue(&raw));
  try {
    return nlohmann::json::parse(raw);
  } catch (const std::exception& e) {
    return MakeError(path, ": ", e.what());
  }
}

Expected<std::vector<AddedToken>> ParseAddedTokens(const nlohmann::json& j) {
  if (!j.is_array()) return MakeError("added_tokens: expected an array");
  std::vector<AddedToken> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const nlohmann::json& e = j[i];
    const std::string path = StrCat("added_tokens[", i, "]");
    if (!e.is_object()) return MakeError(path, ": expected an object");
    AddedToken t;
    for (const auto& [key, value] : e.items()) {
      bool* flag = key == "special" ? &t.special : key == "normalized" ? &t.normalized
                 : key == "lstrip" ? &t.lstrip : key == "rstrip" ? &t.rstrip
                 : key == "single_word" ? &t.single_word : nullptr;
      if (flag) {
        if (!value.is_boolean()) return MakeError(path, ".", key, ": expected a boolean");
        *flag = value.get<bool>();
      } else if (key == "content") {
        if (!value.is_string()) return MakeError(path, ".content: expected a string");
        t.content = value.get<std::string>();
      } else if (key == "id") {
        if (!value.is_number_unsigned() || value.get<uint64_t>() > 0x7FFFFFFF) {
          return MakeError(path, ".id: expected a non-negative integer");
        }
        t.id = static_cast<int32_t>(value.get<uint64_t>());
      } else {
        return MakeError(path, ": added token option '", key, "' is not supported");
      }
    }
    if (!e.contains("content")) return MakeError(path, ": missing field 'content'");
    if (!e.contains("id")) return MakeError(path, ": missing field 'id'");
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

Expected<Tokenizer> Tokenizer::Load(const std::string& path) {
  std::string file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) file = (std::filesystem::path(path) / "tokenizer.json").string();
  GS_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(file));
  const std::string_view text(reinterpret_cast<const char*>(mapped.data()), mapped.size());
  return FromJson(text, file);
}

Expected<Tokenizer> Tokenizer::FromJson(std::string_view json, const std::string& source) {
  if (!IsValidUtf8(json)) return MakeError(source, ": the file is not valid UTF-8");
  Tokenizer t;
  JsonCursor c(json, source);
  bool first = true, seen_model = false;
  std::string key;
  std::vector<AddedToken> added;
  nlohmann::json normalizer, pre_tokenizer, post_processor, decoder;
  auto fail = [&](Error e) { return WithSource(source, std::move(e)); };
  if (c.Peek() != '{') return fail(c.ErrorHere("expected a JSON object"));
  GS_RETURN_IF_ERROR(c.Expect('{'));
  while (true) {
    Expected<bool> more = c.NextKey(&first, &key);
    if (!more.ok()) return fail(more.take_error());
    if (!*more) break;
    if (key == "model") {
      Expected<BpeModel> model = BpeModel::Parse(c);
      if (!model.ok()) return fail(model.take_error());
      t.model_ = std::move(model).value();
      seen_model = true;
      continue;
    }
    if (key != "version" && key != "truncation" && key != "padding" && key != "added_tokens" &&
        key != "normalizer" && key != "pre_tokenizer" && key != "post_processor" &&
        key != "decoder") {
      Status s = c.SkipValue();  // HF ignores unknown top-level keys
      if (!s.ok()) return fail(s.take_error());
      continue;
    }
    Expected<nlohmann::json> value = ReadComponent(c, key);
    if (!value.ok()) return fail(value.take_error());
    if (key == "version") {
      if (!value->is_string() || value->get<std::string>() != "1.0") {
        return fail(MakeError("version ", value->dump(), " is not supported (expected \"1.0\")"));
      }
    } else if (key == "truncation" || key == "padding") {
      if (!value->is_null()) return fail(MakeError(key, " is not supported (must be null)"));
    } else if (key == "added_tokens") {
      Expected<std::vector<AddedToken>> parsed = ParseAddedTokens(*value);
      if (!parsed.ok()) return fail(parsed.take_error());
      added = std::move(parsed).value();
    } else if (key == "normalizer") {
      normalizer = std::move(*value);
    } else if (key == "pre_tokenizer") {
      pre_tokenizer = std::move(*value);
    } else if (key == "post_processor") {
      post_processor = std::move(*value);
    } else {
      decoder = std::move(*value);
    }
  }
  Status end = c.ExpectEnd();
  if (!end.ok()) return fail(end.take_error());
  if (!seen_model) return fail(MakeError("missing field 'model'"));
  for (Status s : {ParseNormalizer(normalizer, "normalizer", &t.normalizer_),
                   ParsePreTokenizer(pre_tokenizer, "pre_tokenizer", &t.pre_tokenizer_),
                   ParsePostProcessor(post_processor, "post_processor", &t.post_processor_),
                   ParseDecoder(decoder, "decoder", &t.decoder_)}) {
    if (!s.ok()) return fail(s.take_error());
  }
  Status built = t.BuildAddedTokens(std::move(added));
  if (!built.ok()) return fail(built.take_error());
  return t;
}

// HF AddedVocabulary::add_tokens: an added token takes the id its content has in the model
// vocabulary, else the next free id after the vocabulary (the "id" field is not used).
Status Tokenizer::BuildAddedTokens(std::vector<AddedToken> tokens) {
  const VocabTable& vocab = model_.vocab();
  std::map<std::string, int32_t> id_of_content;
  std::map<int32_t, AddedToken> by_id;
  std::set<std::string> special_contents;
  auto next_id = static_cast<int32_t>(vocab.size());
  for (AddedToken& t : tokens) {
    if (t.content.empty()) continue;
    int32_t id;
    if (auto it = id_of_content.find(t.content); it != id_of_content.end()) {
      id = it->second;
    } else if ((id = vocab.Find(t.content)) < 0) {
      id = next_id++;
    }
    t.id = id;
    id_of_content[t.content] = id;
    if (t.special) special_contents.insert(t.content);
    by_id[id] = t;
  }
  id_limit_ = vocab.id_limit();
  for (const auto& [id, t] : by_id) id_limit_ = std::max(id_limit_, id + 1);

  decoder_input_.assign(id_limit_, std::string());
  has_input_.assign(id_limit_, 0);
  special_.assign(id_limit_, 0);
  skip_special_.assign(id_limit_, 0);
  added_index_.assign(id_limit_, -1);
  for (int32_t id = 0; id < vocab.id_limit(); ++id) {
    bool found;
    const std::string_view s = vocab.Token(id, &found);
    if (found) {
      decoder_input_[id] = std::string(s);
      has_input_[id] = 1;
    }
  }
  for (auto& [id, t] : by_id) {
    std::string pattern = t.content;
    if (t.normalized && !normalizer_.empty()) {
      std::string scratch;
      pattern = std::string(normalizer_.Apply(t.content, &scratch));
    }
    // Decoding shows a normalized token in its normalized form, for the decoder to undo.
    decoder_input_[id] = pattern;
    has_input_[id] = 1;
    special_[id] = t.special;
    const auto index = static_cast<int32_t>(added_.size());
    added_index_[id] = index;
    if (!pattern.empty()) {
      Status s = (t.normalized ? normalized_matcher_ : raw_matcher_).Add(pattern, index);
      if (!s.ok()) return MakeError("added_tokens: \"", t.content, "\": ", s.error().message);
    }
    added_.push_back(std::move(t));
  }
  for (int32_t id = 0; id < id_limit_; ++id) {
    skip_special_[id] = has_input_[id] && special_contents.count(decoder_input_[id]);
  }
  for (const auto& [content, id] : id_of_content) added_by_content_.emplace_back(content, id);
  return Ok();
}

void Tokenizer::EncodeText(std::string_view text, std::vector<int32_t>* ids) const {
  std::string normalized_scratch;
  std::vector<std::string_view> words;
  raw_matcher_.Split(text, added_, [&](int32_t index, size_t start, size_t end) {
    if (index >= 0) {
      ids->push_back(added_[index].id);
      return;
    }
    if (end <= start) return;
    const std::string_view normalized =
        normalizer_.Apply(text.substr(start, end - start), &normalized_scratch);
    normalized_matcher_.Split(normalized, added_, [&](int32_t index2, size_t s2, size_t e2) {
      if (index2 >= 0) {
        ids->push_back(added_[index2].id);
        return;
      }
      if (e2 <= s2) return;
      const std::string_view piece = normalized.substr(s2, e2 - s2);
      if (pre_tokenizer_.empty()) {
        model_.Tokenize(piece, ids);
        return;
      }
      pre_tokenizer_.Apply(piece, &words);
      for (std::string_view w : words) model_.Tokenize(w, ids);
    });
  });
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = RepairUtf8(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  const bool post = add_special_tokens && post_processor_.present;
  if (post) ids = post_processor_.prefix;
  EncodeText(text, &ids);
  if (post) ids.insert(ids.end(), post_processor_.suffix.begin(), post_processor_.suffix.end());
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* s = DecoderInput(id);
    if (s == nullptr || (skip_special_tokens && skip_special_[id])) continue;
    tokens.push_back(*s);
  }
  if (decoder_.present()) return decoder_.Decode(std::move(tokens));
  return Join(tokens, " ");
}

const std::string* Tokenizer::DecoderInput(int32_t id) const {
  if (id < 0 || id >= id_limit_ || !has_input_[id]) return nullptr;
  return &decoder_input_[id];
}

bool Tokenizer::SkippedWhenSkippingSpecial(int32_t id) const {
  return id >= 0 && id < id_limit_ && skip_special_[id];
}

int32_t Tokenizer::TokenToId(std::string_view token) const {
  auto it = std::lower_bound(
      added_by_content_.begin(), added_by_content_.end(), token,
      [](const std::pair<std::string, int32_t>& e, std::string_view v) { return e.first < v; });
  if (it != added_by_content_.end() && it->first == token) return it->second;
  return model_.vocab().Find(token);
}

std::string Tokenizer::IdToToken(int32_t id) const {
  if (id >= 0 && id < id_limit_ && added_index_[id] >= 0) return added_[added_index_[id]].content;
  return std::string(model_.vocab().Token(id));
}

bool Tokenizer::IsSpecial(int32_t id) const { return id >= 0 && id < id_limit_ && special_[id]; }

}  // namespace gs
