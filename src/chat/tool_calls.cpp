#include "chat/tool_calls.h"

#include <memory>
#include <random>
#include <utility>

#include "chat/marker_scan.h"
#include "chat/tool_call_syntax.h"

namespace gs {
namespace {

constexpr std::string_view kToolCallOpen = "<|tool_call>";
constexpr size_t kIdRandomChars = 24;

std::string IdFromEngine(std::mt19937_64& engine) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::uniform_int_distribution<int> pick(0, static_cast<int>(sizeof(kAlphabet)) - 2);
  std::string id = "call_";
  for (size_t i = 0; i < kIdRandomChars; ++i) id += kAlphabet[pick(engine)];
  return id;
}

}  // namespace

std::string MakeRandomToolCallId() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return IdFromEngine(engine);
}

ToolCallIdGenerator MakeSeededToolCallIdGenerator(uint64_t seed) {
  // Shared so that copies of the std::function draw from one sequence.
  auto engine = std::make_shared<std::mt19937_64>(seed);
  return [engine] { return IdFromEngine(*engine); };
}

nlohmann::json ToolCallToJson(const ToolCall& call) {
  return {{"id", call.id},
          {"type", "function"},
          {"function", {{"name", call.name}, {"arguments", call.arguments}}}};
}

nlohmann::json ToolCallDeltaToJson(const ToolCallDelta& delta) {
  nlohmann::json out = {{"index", delta.index}};
  nlohmann::json function = {{"arguments", delta.arguments}};
  if (!delta.id.empty()) {
    out["id"] = delta.id;
    out["type"] = "function";
  }
  if (!delta.name.empty()) function["name"] = delta.name;
  out["function"] = std::move(function);
  return out;
}

struct ToolCallStreamParser::Active {
  explicit Active(int max_depth) : syntax(max_depth) {}
  GemmaCallSyntax syntax;
  std::string body;        // bytes after `<|tool_call>` consumed so far
  bool announced = false;  // stream_arguments: id/name delta sent
  int index = 0;
  std::string id;
  size_t arguments_sent = 0;
};

ToolCallStreamParser::ToolCallStreamParser(ToolCallParserOptions options)
    : options_(std::move(options)) {}
ToolCallStreamParser::~ToolCallStreamParser() = default;
ToolCallStreamParser::ToolCallStreamParser(ToolCallStreamParser&&) noexcept = default;
ToolCallStreamParser& ToolCallStreamParser::operator=(ToolCallStreamParser&&) noexcept = default;

ToolCallStreamDelta ToolCallStreamParser::Feed(std::string_view text) {
  ToolCallStreamDelta out;
  pending_.append(text);
  Process(/*at_end=*/false, out);
  return out;
}

ToolCallStreamDelta ToolCallStreamParser::Finish() {
  ToolCallStreamDelta out;
  Process(/*at_end=*/true, out);
  return out;
}

std::string ToolCallStreamParser::NewId() {
  return options_.make_id ? options_.make_id() : MakeRandomToolCallId();
}

void ToolCallStreamParser::EmitContent(std::string_view text, ToolCallStreamDelta& out) {
  out.content.append(text);
  content_length_ += text.size();
}

void ToolCallStreamParser::StartCall() { active_ = std::make_unique<Active>(options_.max_depth); }

// stream_arguments: announce the call once its name is known, then send new argument text.
void ToolCallStreamParser::StreamProgress(ToolCallStreamDelta& out) {
  if (!options_.stream_arguments || !active_->syntax.name_complete()) return;
  if (!active_->announced) {
    active_->announced = true;
    active_->index = next_index_++;
    active_->id = NewId();
    out.tool_calls.push_back({active_->index, active_->id, active_->syntax.name(), ""});
  }
  const std::string& json = active_->syntax.json();
  if (json.size() == active_->arguments_sent) return;
  if (out.tool_calls.empty() || out.tool_calls.back().index != active_->index) {
    out.tool_calls.push_back({active_->index, "", "", ""});
  }
  out.tool_calls.back().arguments.append(json, active_->arguments_sent);
  active_->arguments_sent = json.size();
}

void ToolCallStreamParser::CompleteCall(ToolCallStreamDelta& out) {
  ToolCall call;
  if (options_.stream_arguments) {
    StreamProgress(out);
    call.id = active_->id;
  } else {
    call.id = NewId();
    out.tool_calls.push_back(
        {next_index_++, call.id, active_->syntax.name(), active_->syntax.json()});
  }
  call.name = active_->syntax.name();
  call.arguments = active_->syntax.json();
  call.raw = std::string(kToolCallOpen) + active_->body;
  call.content_offset = content_length_;
  calls_.push_back(std::move(call));
  active_.reset();
}

void ToolCallStreamParser::AbandonCall(ToolCallStreamDelta& out, std::string_view unread) {
  EmitContent(kToolCallOpen, out);
  pending_ = active_->body + std::string(unread);
  active_.reset();
}

void ToolCallStreamParser::Process(bool at_end, ToolCallStreamDelta& out) {
  size_t pos = 0;
  while (true) {
    const std::string_view text = pending_;
    if (!active_) {
      const size_t hit = text.find(kToolCallOpen, pos);
      if (hit == std::string_view::npos) {
        const size_t keep =
            at_end ? 0 : chat_internal::HeldBackLength(text.substr(pos), {kToolCallOpen});
        EmitContent(text.substr(pos, text.size() - pos - keep), out);
        pos = text.size() - keep;
        break;
      }
      EmitContent(text.substr(pos, hit - pos), out);
      pos = hit + kToolCallOpen.size();
      StartCall();
      continue;
    }
    GemmaCallSyntax::Step step = GemmaCallSyntax::Step::kMore;
    while (pos < text.size() && step == GemmaCallSyntax::Step::kMore) {
      const char c = text[pos++];
      active_->body += c;
      step = kToolCallOpen.size() + active_->body.size() > options_.max_call_bytes
                 ? GemmaCallSyntax::Step::kError
                 : active_->syntax.Push(c);
    }
    if (step == GemmaCallSyntax::Step::kDone) {
      CompleteCall(out);
      continue;
    }
    if (step == GemmaCallSyntax::Step::kError || at_end) {
      AbandonCall(out, text.substr(pos));  // replaces pending_; rescan it from the start
      pos = 0;
      continue;
    }
    StreamProgress(out);
    break;
  }
  pending_.erase(0, pos);
}

ToolCallParseResult ParseToolCalls(std::string_view text, const ToolCallParserOptions& options) {
  ToolCallParserOptions one_shot = options;
  one_shot.stream_arguments = false;
  ToolCallStreamParser parser(std::move(one_shot));
  ToolCallParseResult result;
  result.content = parser.Feed(text).content;
  result.content += parser.Finish().content;
  result.calls = parser.calls();
  return result;
}

}  // namespace gs
