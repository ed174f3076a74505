// tool_choice "required" and a named tool force a tool call (guided decoding,
// server/tool_call_constraint.h). The model is the test-only ScriptedRunner: for prompts with a
// trigger it writes a fixed plain-text answer (or a fixed call), so without the constraint there
// would be no call. The expected fields are written by hand from the Gemma 4 call grammar; the
// arguments are checked by nlohmann's JSON parser.
#include <set>

#include "scripted_runner.h"
#include "server/sse_client.h"
#include "server_test_util.h"
#include "tokenizer/tokenizer.h"

namespace gs::test {
namespace {

const Json kTools = Json::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
  {"type": "function", "function": {"name": "get_time", "description": "Time in a city",
   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
])");

class ToolChoiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tok = Tokenizer::Load(DemoModelDir::Get().path());
    ASSERT_TRUE(tok.ok()) << tok.error().message;
    auto ids = [&](const std::string& s) { return tok->Encode(s, false); };
    std::vector<Script> scripts = {
        {ids("#plain"), ids("It is sunny in Paris today.")},
        {ids("#call"),
         ids("<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:3}<tool_call|>")},
    };
    const int32_t end_of_turn = tok->TokenToId("<turn|>");
    TestServerOptions o;
    o.max_num_seqs = 4;
    o.tool_call_close_after_tokens = 48;  // more than the scripted call below
    o.wrap_runner = [scripts, end_of_turn](std::unique_ptr<ModelRunner> inner) {
      return std::unique_ptr<ModelRunner>(
          std::make_unique<ScriptedRunner>(std::move(inner), scripts, end_of_turn));
    };
    server_ = StartServer(o).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  static Json Ask(const std::string& text, const Json& tool_choice, int max_tokens = 200) {
    Json body = {{"model", "demo"},
                 {"messages", Json::array({{{"role", "user"}, {"content", text}}})},
                 {"tools", kTools},
                 {"temperature", 0},
                 {"max_tokens", max_tokens}};
    if (!tool_choice.is_null()) body["tool_choice"] = tool_choice;
    const HttpReply r = PostJson(server_->http().port(), "/v1/chat/completions", body);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json;
  }

  static server::ModelServer* server_;
};
server::ModelServer* ToolChoiceTest::server_ = nullptr;

// The call's arguments must be a JSON object (independent parser).
Json Arguments(const Json& call) {
  const std::string text = call["function"]["arguments"].get<std::string>();
  Json args = Json::parse(text, nullptr, false);
  EXPECT_FALSE(args.is_discarded()) << text;
  EXPECT_TRUE(args.is_object()) << text;
  return args;
}

TEST_F(ToolChoiceTest, AutoLeavesAPlainAnswerAlone) {
  ASSERT_TRUE(server_);
  const Json r = Ask("#plain what is the weather?", "auto");
  const Json& choice = r["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "stop") << r.dump();
  EXPECT_FALSE(choice["message"].contains("tool_calls")) << r.dump();
  EXPECT_EQ(choice["message"]["content"], "It is sunny in Paris today.") << r.dump();
}

TEST_F(ToolChoiceTest, RequiredForcesACallOfADeclaredTool) {
  ASSERT_TRUE(server_);
  const Json r = Ask("#plain what is the weather?", "required");
  const Json& choice = r["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls") << r.dump();
  ASSERT_TRUE(choice["message"].contains("tool_calls")) << r.dump();
  const Json& calls = choice["message"]["tool_calls"];
  ASSERT_GE(calls.size(), 1u) << r.dump();
  const std::string name = calls[0]["function"]["name"];
  EXPECT_TRUE(name == "get_weather" || name == "get_time") << name;
  EXPECT_EQ(calls[0]["type"], "function");
  Arguments(calls[0]);
  // The text the model wanted to write did not leak out as content around the call.
  EXPECT_TRUE(choice["message"]["content"].is_null() ||
              choice["message"]["content"].get<std::string>().find("<|tool_call>") ==
                  std::string::npos)
      << r.dump();
}

TEST_F(ToolChoiceTest, NamedToolForcesThatFunction) {
  ASSERT_TRUE(server_);
  for (const std::string want : {"get_time", "get_weather"}) {
    const Json r = Ask("#plain what time is it?",
                       {{"type", "function"}, {"function", {{"name", want}}}});
    const Json& choice = r["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls") << r.dump();
    ASSERT_TRUE(choice["message"].contains("tool_calls")) << r.dump();
    EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], want) << r.dump();
    Arguments(choice["message"]["tool_calls"][0]);
  }
}

TEST_F(ToolChoiceTest, AModelThatCallsAnywayIsNotDisturbed) {
  ASSERT_TRUE(server_);
  for (const Json& tc : {Json("required"), Json("auto")}) {
    const Json r = Ask("#call weather in Paris?", tc);
    const Json& calls = r["choices"][0]["message"]["tool_calls"];
    ASSERT_EQ(calls.size(), 1u) << r.dump();
    EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
    EXPECT_EQ(Arguments(calls[0]), Json::parse(R"({"city": "Paris", "days": 3})"));
  }
}

TEST_F(ToolChoiceTest, NamedToolOverridesTheModelsChoiceOfFunction) {
  ASSERT_TRUE(server_);
  // The script calls get_weather; naming get_time makes the name get_time.
  const Json r = Ask("#call weather in Paris?",
                     {{"type", "function"}, {"function", {{"name", "get_time"}}}});
  const Json& calls = r["choices"][0]["message"]["tool_calls"];
  ASSERT_GE(calls.size(), 1u) << r.dump();
  EXPECT_EQ(calls[0]["function"]["name"], "get_time");
  Arguments(calls[0]);
}

TEST_F(ToolChoiceTest, StreamingRequiredAlsoCalls) {
  ASSERT_TRUE(server_);
  Json body = {{"model", "demo"},
               {"messages", Json::array({{{"role", "user"}, {"content", "#plain weather?"}}})},
               {"tools", kTools},
               {"tool_choice", "required"},
               {"temperature", 0},
               {"max_tokens", 200},
               {"stream", true}};
  std::set<std::string> names;
  std::string finish;
  auto r = server::PostStream("127.0.0.1", server_->http().port(), "/v1/chat/completions",
                              body.dump(), "", [&](const std::string& data) {
                                Json c = Json::parse(data, nullptr, false);
                                if (c.is_discarded()) return true;
                                for (const Json& ch : c["choices"]) {
                                  if (ch["delta"].contains("tool_calls")) {
                                    for (const Json& t : ch["delta"]["tool_calls"]) {
                                      if (t.contains("function") && t["function"].contains("name")) {
                                        names.insert(t["function"]["name"].get<std::string>());
                                      }
                                    }
                                  }
                                  if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
                                }
                                return true;
                              },
                              60);
  EXPECT_TRUE(r.completed) << r.error;
  EXPECT_EQ(finish, "tool_calls");
  ASSERT_EQ(names.size(), 1u);
  EXPECT_TRUE(names.count("get_weather") || names.count("get_time"));
}

TEST_F(ToolChoiceTest, ToolNamesACallCannotCarryAreRefused) {
  ASSERT_TRUE(server_);
  Json body = {{"model", "demo"},
               {"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})},
               {"tools", Json::parse(R"([{"type":"function","function":{"name":"has space"}}])")},
               {"tool_choice", "required"},
               {"max_tokens", 5}};
  ExpectApiError(PostJson(server_->http().port(), "/v1/chat/completions", body), 400,
                 "BadRequestError", "tool_choice");
}

}  // namespace
}  // namespace gs::test
