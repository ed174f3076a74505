#include "cli/commands.h"

#include <cstdio>

namespace gs::cli {

// Declared here, defined in cmd_*.cpp; one line each keeps the list readable.
int RunBench(int argc, char** argv);
int RunGenerate(int argc, char** argv);
int RunMakeDemoModel(int argc, char** argv);
int RunConvert(int argc, char** argv);
int RunQuantize(int argc, char** argv);
int RunInspect(int argc, char** argv);
int RunTokenize(int argc, char** argv);
int RunDetokenize(int argc, char** argv);
int RunBenchTokenizer(int argc, char** argv);
int RunChatTemplate(int argc, char** argv);
int RunServe(int argc, char** argv);
int RunBenchServe(int argc, char** argv);
int RunKvCapacity(int argc, char** argv);
int RunBenchGemv(int argc, char** argv);

const std::vector<Command>& AllCommands() {
  static const std::vector<Command> commands = {
      {"bench", "offline decode/prefill benchmark on the GPU (--load-format dummy: no checkpoint)",
       RunBench},
      {"generate", "run a prompt of token ids through the model, print ids and tok/s", RunGenerate},
      {"make-demo-model", "write a tiny random-weight Gemma 4 MoE checkpoint (NVFP4)",
       RunMakeDemoModel},
      {"convert", "compressed-tensors NVFP4 -> ModelOpt NVFP4 with BF16 attention", RunConvert},
      {"quantize", "BF16 -> ModelOpt NVFP4 (experts and dense MLP)", RunQuantize},
      {"inspect", "formats, sizes, KV cost and sanity findings of a checkpoint", RunInspect},
      {"tokenize", "text (JSON lines) -> token ids with a tokenizer.json", RunTokenize},
      {"detokenize", "token ids (JSON lines) -> text with a tokenizer.json", RunDetokenize},
      {"bench-tokenizer", "tokenizer load and encode speed (vs HF tokenizers)", RunBenchTokenizer},
      {"chat-template", "render a chat request through a chat template", RunChatTemplate},
      {"serve", "OpenAI-compatible HTTP server (flags as vllm serve)", RunServe},
      {"bench-serve", "load-test a running server (as vllm bench serve)", RunBenchServe},
      {"kv-capacity", "sequences that fit in a KV budget with gemmaserve's KV layout", RunKvCapacity},
      {"bench-gemv", "decode BF16 products: cuBLASLt vs the streaming GEMV (GPU)", RunBenchGemv},
  };
  return commands;
}

int Fail(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "gemmaserve %s: error: %s\n", command.c_str(), message.c_str());
  return 1;
}

}  // namespace gs::cli
