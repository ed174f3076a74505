// Bad input never hurts the server: each malformed or out-of-range request gets the status and
// OpenAI error JSON vLLM gives ({"error": {"message", "type", "param", "code"}}), and the next
// good request still succeeds.
#include <thread>

#include "server/sse_client.h"
#include "server_test_util.h"

namespace gs::test {
namespace {

class BadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    TestServerOptions o;
    o.max_num_seqs = 4;
    o.max_model_len = 256;
    o.kv_tokens = 4096;
    o.max_body_bytes = 64 * 1024;
    server_ = StartServer(o).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_); }
  // After every bad request: a good one works and the server is healthy.
  void TearDown() override {
    if (!server_) return;
    const HttpReply good = PostJson(port(), "/v1/chat/completions",
                                    {{"model", "demo"},
                                     {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                     {"max_tokens", 3},
                                     {"temperature", 0}});
    EXPECT_EQ(good.status, 200) << good.body;
    if (good.status == 200) {
      const int n = good.json["usage"]["completion_tokens"].get<int>();
      EXPECT_TRUE(n >= 1 && n <= 3) << good.body;
    }
    EXPECT_EQ(Get(port(), "/health").status, 200);
  }
  static int port() { return server_->http().port(); }
  static HttpReply Chat(Json extra) {
    Json body = {{"model", "demo"},
                 {"messages", {{{"role", "user"}, {"content", "hello"}}}},
                 {"max_tokens", 4}};
    for (auto it = extra.begin(); it != extra.end(); ++it) body[it.key()] = it.value();
    return PostJson(port(), "/v1/chat/completions", body);
  }
  static HttpReply Completion(Json extra) {
    Json body = {{"model", "demo"}, {"prompt", "hello"}, {"max_tokens", 4}};
    for (auto it = extra.begin(); it != extra.end(); ++it) body[it.key()] = it.value();
    return PostJson(port(), "/v1/completions", body);
  }

  static server::ModelServer* server_;
};
server::ModelServer* BadInput::server_ = nullptr;

TEST_F(BadInput, MalformedJson) {
  ExpectApiError(PostRaw(port(), "/v1/chat/completions", "{\"messages\": [}"), 400,
                 "BadRequestError");
  ExpectApiError(PostRaw(port(), "/v1/completions", ""), 400, "BadRequestError");
}

TEST_F(BadInput, InvalidUtf8InJson) {
  ExpectApiError(PostRaw(port(), "/v1/completions", "{\"prompt\": \"\xff\xfe\"}"), 400,
                 "BadRequestError");
}

TEST_F(BadInput, BodyIsNotAnObject) {
  ExpectApiError(PostRaw(port(), "/v1/chat/completions", "[1, 2]"), 400, "BadRequestError");
  ExpectApiError(PostRaw(port(), "/v1/completions", "42"), 400, "BadRequestError");
}

TEST_F(BadInput, WrongTypes) {
  ExpectApiError(Chat({{"max_tokens", "ten"}}), 400, "BadRequestError", "max_tokens");
  ExpectApiError(Chat({{"messages", "hi"}}), 400, "BadRequestError", "messages");
  ExpectApiError(Chat({{"stream", "yes"}}), 400, "BadRequestError", "stream");
  ExpectApiError(Chat({{"temperature", {1}}}), 400, "BadRequestError", "temperature");
  ExpectApiError(Chat({{"stop", {1, 2}}}), 400, "BadRequestError", "stop");
  ExpectApiError(Chat({{"logit_bias", {1, 2}}}), 400, "BadRequestError", "logit_bias");
  ExpectApiError(Chat({{"messages", {{{"content", "no role"}}}}}), 400, "BadRequestError",
                 "messages");
  ExpectApiError(Completion({{"prompt", {{"a", 1}}}}), 400, "BadRequestError", "prompt");
  ExpectApiError(Completion({{"max_tokens", 2.5}}), 400, "BadRequestError", "max_tokens");
}

TEST_F(BadInput, MissingFields) {
  ExpectApiError(PostJson(port(), "/v1/chat/completions", {{"model", "demo"}}), 400,
                 "BadRequestError", "messages");
  ExpectApiError(PostJson(port(), "/v1/completions", {{"model", "demo"}}), 400,
                 "BadRequestError", "prompt");
  ExpectApiError(Chat({{"messages", Json::array()}}), 400, "BadRequestError", "messages");
  ExpectApiError(PostJson(port(), "/detokenize", Json::object()), 400, "BadRequestError",
                 "tokens");
}

TEST_F(BadInput, UnknownModelIs404) {
  const HttpReply r = Chat({{"model", "gpt-4"}});
  ExpectApiError(r, 404, "NotFoundError", "model");
  EXPECT_EQ(r.json["error"]["message"], "The model `gpt-4` does not exist.");
  ExpectApiError(Completion({{"model", "nope"}}), 404, "NotFoundError", "model");
}

TEST_F(BadInput, PromptPlusMaxTokensBeyondMaxModelLen) {
  ExpectApiError(Completion({{"max_tokens", 257}}), 400, "BadRequestError", "max_tokens");
  ExpectApiError(Completion({{"prompt", std::vector<int>(250, 400)}, {"max_tokens", 10}}), 400,
                 "BadRequestError", "max_tokens");
  ExpectApiError(Completion({{"prompt", std::vector<int>(300, 400)}, {"max_tokens", nullptr}}),
                 400, "BadRequestError", "prompt");
  ExpectApiError(Chat({{"messages", {{{"role", "user"}, {"content", std::string(400, 'a')}}}}}),
                 400, "BadRequestError");
}

TEST_F(BadInput, OutOfRangeSamplingValues) {
  ExpectApiError(Chat({{"temperature", -1}}), 400, "BadRequestError", "temperature");
  ExpectApiError(Chat({{"top_p", 1.5}}), 400, "BadRequestError", "top_p");
  ExpectApiError(Chat({{"top_p", 0}}), 400, "BadRequestError", "top_p");
  ExpectApiError(Chat({{"top_k", -2}}), 400, "BadRequestError", "top_k");
  ExpectApiError(Chat({{"min_p", 2}}), 400, "BadRequestError", "min_p");
  ExpectApiError(Chat({{"presence_penalty", 3}}), 400, "BadRequestError", "presence_penalty");
  ExpectApiError(Chat({{"frequency_penalty", -2.5}}), 400, "BadRequestError", "frequency_penalty");
  ExpectApiError(Chat({{"repetition_penalty", 0}}), 400, "BadRequestError", "repetition_penalty");
  ExpectApiError(Chat({{"n", 0}}), 400, "BadRequestError", "n");
  ExpectApiError(Chat({{"logprobs", true}, {"top_logprobs", 21}}), 400, "BadRequestError",
                 "top_logprobs");
  ExpectApiError(Chat({{"top_logprobs", 2}}), 400, "BadRequestError", "top_logprobs");
  ExpectApiError(Completion({{"logprobs", 50}}), 400, "BadRequestError", "logprobs");
  ExpectApiError(Chat({{"logit_bias", {{"99999", 1}}}}), 400, "BadRequestError", "logit_bias");
  ExpectApiError(Chat({{"logit_bias", {{"5", 500}}}}), 400, "BadRequestError", "logit_bias");
  ExpectApiError(Chat({{"min_tokens", 10}, {"max_tokens", 5}}), 400, "BadRequestError",
                 "min_tokens");
  ExpectApiError(Chat({{"stop_token_ids", {1 << 20}}}), 400, "BadRequestError", "stop_token_ids");
  ExpectApiError(Completion({{"prompt", {1, 2, 5000}}}), 400, "BadRequestError", "prompt");
  ExpectApiError(Chat({{"max_tokens", 0}}), 400, "BadRequestError", "max_tokens");
}

TEST_F(BadInput, TooManyOrEmptyStopStrings) {
  std::vector<std::string> stops(33, "x");
  ExpectApiError(Chat({{"stop", stops}}), 400, "BadRequestError", "stop");
  ExpectApiError(Chat({{"stop", ""}}), 400, "BadRequestError", "stop");
  ExpectApiError(Chat({{"stop", std::string(600, 'y')}}), 400, "BadRequestError", "stop");
}

TEST_F(BadInput, BodyOverTheSizeLimitIs413) {
  const std::string big = "{\"prompt\": \"" + std::string(100 * 1024, 'a') + "\"}";
  ExpectApiError(PostRaw(port(), "/v1/completions", big), 413, "RequestTooLargeError");
}

TEST_F(BadInput, DeeplyNestedJson) {
  const std::string deep = std::string(5000, '[') + std::string(5000, ']');
  ExpectApiError(PostRaw(port(), "/v1/chat/completions", "{\"messages\": " + deep + "}"), 400,
                 "BadRequestError");
}

TEST_F(BadInput, ToolChoiceProblems) {
  ExpectApiError(Chat({{"tool_choice", "auto"}}), 400, "BadRequestError", "tool_choice");
  const Json tools = {{{"type", "function"},
                       {"function", {{"name", "get_weather"}, {"parameters", Json::object()}}}}};
  ExpectApiError(Chat({{"tools", tools},
                       {"tool_choice", {{"type", "function"}, {"function", {{"name", "other"}}}}}}),
                 400, "BadRequestError", "tool_choice");
  ExpectApiError(Chat({{"tools", tools}, {"tool_choice", "sometimes"}}), 400, "BadRequestError",
                 "tool_choice");
  ExpectApiError(Chat({{"tools", {{{"type", "function"}}}}}), 400, "BadRequestError", "tools");
}

TEST_F(BadInput, StreamOptionsWithoutStreamAndUnsupportedFeatures) {
  ExpectApiError(Chat({{"stream_options", {{"include_usage", true}}}}), 400, "BadRequestError",
                 "stream_options");
  ExpectApiError(Chat({{"response_format", {{"type", "json_object"}}}}), 400, "BadRequestError",
                 "response_format");
  ExpectApiError(Chat({{"use_beam_search", true}}), 400, "BadRequestError", "use_beam_search");
}

TEST_F(BadInput, UnknownRouteAndBadChatTemplate) {
  ExpectApiError(Get(port(), "/v1/nothing"), 404, "NotFoundError");
  ExpectApiError(Chat({{"chat_template", "{% if %}"}}), 400, "BadRequestError", "chat_template");
}

TEST_F(BadInput, OverloadGets429ThenRecovers) {
  // A server with one running slot and a one-request queue: a third request is refused.
  TestServerOptions o;
  o.max_num_seqs = 1;
  o.max_waiting_requests = 1;
  auto small = StartServer(o);
  ASSERT_TRUE(small);
  const int p = small->http().port();
  std::atomic<int> started{0};
  auto long_stream = [&](std::atomic<bool>* stop) {
    Json body = {{"prompt", "hello"}, {"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}};
    server::PostStream("127.0.0.1", p, "/v1/completions", body.dump(), "", [&](const std::string&) {
      ++started;
      return !stop->load();
    });
  };
  std::atomic<bool> stop{false};
  std::thread a(long_stream, &stop);
  while (started.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::thread b(long_stream, &stop);  // waits in the queue (its stream opens, no tokens yet)
  for (int i = 0; i < 400 && Metric(p, "gemmaserve:num_waiting_requests") < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(Metric(p, "gemmaserve:num_waiting_requests"), 1);
  const HttpReply refused = PostJson(p, "/v1/completions", {{"prompt", "hi"}, {"max_tokens", 2}});
  ExpectApiError(refused, 429, "RateLimitError");
  EXPECT_NE(refused.json["error"]["message"].get<std::string>().find("overloaded"),
            std::string::npos) << refused.body;
  stop = true;  // both clients leave; their requests are cancelled
  a.join();
  b.join();
  HttpReply ok;
  for (int i = 0; i < 200; ++i) {
    ok = PostJson(p, "/v1/completions", {{"prompt", "hi"}, {"max_tokens", 2}});
    if (ok.status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_GT(Metric(p, "gemmaserve:http_rejected_total"), 0);
}

TEST_F(BadInput, ApiKeyRequiredOnV1Routes) {
  TestServerOptions o;
  o.api_key = "sekrit";
  auto keyed = StartServer(o);
  ASSERT_TRUE(keyed);
  const int p = keyed->http().port();
  const Json body = {{"prompt", "hi"}, {"max_tokens", 2}};
  ExpectApiError(PostJson(p, "/v1/completions", body), 401, "AuthenticationError");
  ExpectApiError(PostJson(p, "/v1/completions", body, {{"Authorization", "Bearer wrong"}}), 401,
                 "AuthenticationError");
  EXPECT_EQ(PostJson(p, "/v1/completions", body, {{"Authorization", "Bearer sekrit"}}).status, 200);
  EXPECT_EQ(Get(p, "/health").status, 200);  // as vLLM: only /v1 is guarded
}

}  // namespace
}  // namespace gs::test
