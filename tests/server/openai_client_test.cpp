// The official `openai` npm client against the in-process server (tests/server/openai_client.js):
// chat and completions, streamed and not, usage, logprobs, logit_bias, n, stop strings, errors,
// and the Gemma 4 tool-call and reasoning fields. Tool calls and thinking blocks come from the
// test-only ScriptedRunner (the demo model is random); expected fields are written from the
// Gemma 4 output format, not from our parsers.
#include <cstdio>

#include "scripted_runner.h"
#include "server_test_util.h"
#include "tokenizer/tokenizer.h"

namespace gs::test {
namespace {

bool NodeReady(std::string* why) {
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    *why = "node is not installed";
    return false;
  }
  if (!std::filesystem::exists(std::string(GS_SOURCE_DIR) +
                               "/tests/oracle/node_modules/openai/package.json")) {
    *why = "tests/oracle/node_modules/openai is missing (run scripts/install_test_deps.sh)";
    return false;
  }
  return true;
}

TEST(OpenAiClient, OfficialSdkAgainstTheServer) {
  std::string why;
  if (!NodeReady(&why)) GTEST_SKIP() << "SKIPPING the openai client test: " << why;
  auto tok = Tokenizer::Load(DemoModelDir::Get().path());
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  auto ids = [&](const std::string& s) { return tok->Encode(s, false); };
  std::vector<Script> scripts = {
      {ids("#tool1"),
       ids("<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:3}<tool_call|>")},
      {ids("#think1"), ids("<|channel>thought\nSum 2 and 2.<channel|>The answer is 4.")},
      {ids("#both"),
       ids("<|channel>thought\nNeed weather.<channel|><|tool_call>call:get_weather{city:<|\"|>Oslo"
           "<|\"|>}<tool_call|>")},
      {ids("#stop"), ids("alpha beta gamma")},
  };
  const int32_t end_of_turn = tok->TokenToId("<turn|>");
  ASSERT_EQ(end_of_turn, 106);
  TestServerOptions o;
  o.max_num_seqs = 4;
  o.tool_call_close_after_tokens = 48;  // bounds forced calls (longer than the #tool1 call)
  o.wrap_runner = [&](std::unique_ptr<ModelRunner> inner) -> std::unique_ptr<ModelRunner> {
    return std::make_unique<ScriptedRunner>(std::move(inner), scripts, end_of_turn);
  };
  auto server = StartServer(o);
  ASSERT_TRUE(server);
  const std::string cmd = StrCat("node ", GS_SOURCE_DIR, "/tests/server/openai_client.js ",
                                 server->http().port(), " 2>&1");
  FILE* f = ::popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int status = ::pclose(f);
  std::printf("%s", out.c_str());
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("checks passed"), std::string::npos) << out;
}

}  // namespace
}  // namespace gs::test
