// ChatTemplate loading rules: where the template comes from (override file > chat_template.jinja >
// tokenizer_config.json string > list of named templates, with "tool_use" chosen for requests with
// tools), which special tokens the template sees, and request validation errors.
#include <gtest/gtest.h>

#include <filesystem>

#include "chat/chat_template.h"
#include "util/mapped_file.h"

namespace gs {
namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

const char* kProbe = "{{ bos_token }}|{{ eos_token }}|{{ messages|length }}|{{ tools is none }}";

Json OneUser() { return Json{{"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}}; }

TEST(ChatTemplateConfig, DefaultsToBosEosWithoutConfig) {
  auto ct = ChatTemplate::FromSources(kProbe, Json::object());
  ASSERT_TRUE(ct.ok()) << ct.error().message;
  auto r = ct->Render(OneUser());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, "<bos>|<eos>|1|True");
}

TEST(ChatTemplateConfig, TokensFromConfigIncludingAddedTokenDicts) {
  Json cfg = {{"bos_token", "<s>"}, {"eos_token", {{"content", "</s>"}, {"special", true}}},
              {"chat_template", kProbe}};
  auto ct = ChatTemplate::FromSources("", cfg);
  ASSERT_TRUE(ct.ok()) << ct.error().message;
  auto r = ct->Render(OneUser());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "<s>|</s>|1|True");
}

TEST(ChatTemplateConfig, NamedTemplateListPicksToolUseForToolRequests) {
  Json cfg = {{"chat_template", Json::array({{{"name", "default"}, {"template", "D{{ tools is none }}"}},
                                             {{"name", "tool_use"}, {"template", "T{{ tools|length }}"}}})}};
  auto ct = ChatTemplate::FromSources("", cfg);
  ASSERT_TRUE(ct.ok()) << ct.error().message;
  Json req = OneUser();
  auto plain = ct->Render(req);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain, "DTrue");
  req["tools"] = Json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}});
  auto tools = ct->Render(req);
  ASSERT_TRUE(tools.ok());
  EXPECT_EQ(*tools, "T1");
}

TEST(ChatTemplateConfig, ModelDirPrefersOverrideThenJinjaFileThenConfig) {
  const fs::path dir = fs::path(::testing::TempDir()) / "ct_model_dir";
  fs::remove_all(dir);
  fs::create_directories(dir);
  ASSERT_TRUE(WriteTextFile((dir / "tokenizer_config.json").string(),
                            Json{{"bos_token", "<B>"}, {"chat_template", "config:{{ bos_token }}"}}
                                .dump())
                  .ok());
  auto from_config = ChatTemplate::FromModelDir(dir.string());
  ASSERT_TRUE(from_config.ok()) << from_config.error().message;
  EXPECT_EQ(*from_config->Render(OneUser()), "config:<B>");

  ASSERT_TRUE(WriteTextFile((dir / "chat_template.jinja").string(), "file:{{ bos_token }}\n").ok());
  auto from_file = ChatTemplate::FromModelDir(dir.string());
  ASSERT_TRUE(from_file.ok());
  EXPECT_EQ(*from_file->Render(OneUser()), "file:<B>");  // trailing newline dropped, as jinja2

  const std::string override_path = (dir / "override.jinja").string();
  ASSERT_TRUE(WriteTextFile(override_path, "override").ok());
  auto overridden = ChatTemplate::FromModelDir(dir.string(), override_path);
  ASSERT_TRUE(overridden.ok());
  EXPECT_EQ(*overridden->Render(OneUser()), "override");
}

TEST(ChatTemplateConfig, ErrorsNameTheirSource) {
  auto none = ChatTemplate::FromSources("", Json::object(), "cfg.json");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("cfg.json"), std::string::npos);

  auto bad = ChatTemplate::FromSources("line1\n{% if %}", Json::object(), "bad.jinja");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("bad.jinja:2:"), std::string::npos) << bad.error().message;

  auto ct = ChatTemplate::FromSources("{{ messages[0].content }}", Json::object());
  ASSERT_TRUE(ct.ok());
  EXPECT_FALSE(ct->Render(Json::object()).ok());
  EXPECT_FALSE(ct->Render(Json{{"messages", "x"}}).ok());
  EXPECT_FALSE(ct->Render(Json{{"messages", Json::array({{{"content", "no role"}}})}}).ok());
  auto part = ct->Render(Json{{"messages", Json::array({{{"role", "user"},
                                                          {"content", Json::array({{{"type", "blob"}}})}}})}});
  ASSERT_FALSE(part.ok());
  EXPECT_NE(part.error().message.find("messages[0].content"), std::string::npos);
  auto missing = ChatTemplate::FromFiles("/nonexistent/chat_template.jinja", "");
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace gs
