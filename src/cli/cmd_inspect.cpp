// gemmaserve inspect: a checkpoint's formats, sizes, KV cost and sanity findings.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "tools/inspect.h"

namespace gs::cli {

int RunInspect(int argc, char** argv) {
  CLI::App app{"Describe a Gemma 4 checkpoint: format and quantization of each module group, "
               "parameters and bytes, KV cache per token, estimated GPU memory, and findings "
               "(NaN/Inf, bad scales, gate/up scale mismatches, partial experts)."};
  InspectOptions o;
  bool as_json = false, fast = false;
  std::string kv_dtype = "bf16";
  app.add_option("path", o.path, "checkpoint directory or Hugging Face id in the local cache")->required();
  app.add_flag("--json", as_json, "print machine-readable JSON");
  app.add_option("--max-model-len", o.max_model_len, "context length for the memory estimate")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  app.add_option("--kv-cache-dtype", kv_dtype, "KV element type for the estimate")->check(CLI::IsMember({"bf16", "fp8"}));
  app.add_flag("--no-value-scan", fast, "skip reading every weight for NaN/Inf");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  o.kv_bytes_per_element = kv_dtype == "fp8" ? 1 : 2;
  o.scan_values = !fast;
  auto report = InspectCheckpoint(o);
  if (!report) return Fail("inspect", report.error().message);
  std::fputs(as_json ? (report->dump(2) + "\n").c_str() : FormatInspectReport(*report).c_str(), stdout);
  return 0;
}

}  // namespace gs::cli
