// Pieces shared by the chat and completion responses: ids, usage, logprobs, finish reasons.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/choice_decoder.h"
#include "server/generation_job.h"
#include "server/json_fields.h"
#include "tokenizer/tokenizer.h"

namespace gs::server {

// prefix + 32 random hex digits ("chatcmpl-…", "cmpl-…").
std::string RandomId(const std::string& prefix);
int64_t UnixSeconds();

Json UsageJson(const Usage& usage);

// A token as logprobs show it: its decoded text, or "token_id:<id>" when asked for ids.
std::string TokenText(const Tokenizer& tokenizer, int32_t id, bool as_token_ids);

// Chat: the entries of logprobs.content for `tokens`.
Json ChatLogprobEntries(const Tokenizer& tokenizer, const std::vector<TokenOut>& tokens,
                        bool as_token_ids, int top);
// Completions: appends to the parallel arrays of a {"tokens","token_logprobs","top_logprobs",
// "text_offset"} object; `offset` is the running text offset.
void AppendCompletionLogprobs(const Tokenizer& tokenizer, const std::vector<TokenOut>& tokens,
                              bool as_token_ids, int top, size_t* offset, Json* logprobs);
Json EmptyCompletionLogprobs();

// OpenAI finish_reason for an ended choice ("tool_calls" replaces "stop" when calls were made).
Json FinishReasonJson(const ChoiceDelta& delta, bool made_tool_calls);
// vLLM's stop_reason: the stop string, the stop_token_ids entry, or null (eos, length).
Json StopReasonJson(const ChoiceDelta& delta, const Request& request);

Json TokenIdsJson(const std::vector<TokenOut>& tokens);

}  // namespace gs::server
