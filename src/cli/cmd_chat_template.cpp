// `gemmaserve chat-template`: renders an OpenAI-style chat request through a chat template and
// prints the prompt text exactly (no trailing newline is added).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "chat/chat_template.h"
#include "cli/commands.h"
#include "util/mapped_file.h"

namespace gs::cli {

int RunChatTemplate(int argc, char** argv) {
  CLI::App app{
      "Render a chat request (JSON with messages, tools, add_generation_prompt, "
      "chat_template_kwargs) through a Hugging Face chat template, as vLLM + transformers do",
      "gemmaserve chat-template"};
  std::string template_path, request_path, config_path;
  app.add_option("--template", template_path,
                 "chat template file (chat_template.jinja); default: the chat_template of "
                 "--tokenizer-config");
  app.add_option("--request", request_path, "request JSON file ('-' for stdin)")->required();
  app.add_option("--tokenizer-config", config_path,
                 "tokenizer_config.json for bos/eos tokens (and the template if --template is "
                 "not given)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (template_path.empty() && config_path.empty()) {
    return Fail("chat-template", "give --template or --tokenizer-config with a chat_template");
  }
  auto ct = ChatTemplate::FromFiles(template_path, config_path);
  if (!ct.ok()) return Fail("chat-template", ct.error().message);
  std::string text;
  if (request_path == "-") {
    int c;
    while ((c = std::getchar()) != EOF) text.push_back(static_cast<char>(c));
  } else {
    auto r = ReadTextFile(request_path);
    if (!r.ok()) return Fail("chat-template", r.error().message);
    text = std::move(*r);
  }
  auto request = nlohmann::ordered_json::parse(text, nullptr, false);
  if (request.is_discarded()) return Fail("chat-template", request_path + ": not valid JSON");
  auto rendered = ct->Render(request);
  if (!rendered.ok()) return Fail("chat-template", rendered.error().message);
  std::fwrite(rendered->data(), 1, rendered->size(), stdout);
  return 0;
}

}  // namespace gs::cli
