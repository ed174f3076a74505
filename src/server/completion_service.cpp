#include "server/completion_service.h"

#include "server/generation_job.h"
#include "server/job_stream.h"
#include "server/response_format.h"
#include "server/sse.h"
#include "util/str.h"

namespace gs::server {
namespace {

// The prompt text echoed before the output (echo=true).
std::vector<std::string> EchoTexts(const Tokenizer& tokenizer, const CompletionRequest& r) {
  std::vector<std::string> texts;
  for (const PromptInput& p : r.prompts) {
    texts.push_back(p.is_text ? p.text : tokenizer.Decode(p.ids, false));
  }
  return texts;
}

class CompletionStream : public JobStream {
 public:
  CompletionStream(const ServingContext& ctx, std::unique_ptr<GenerationJob> job,
                   const CompletionRequest& r)
      : JobStream(std::move(job), r.gen.output, RandomId("cmpl-"), "text_completion", r.gen.model),
        ctx_(ctx),
        offsets_(static_cast<size_t>(job_->num_choices()), 0),
        echoed_(static_cast<size_t>(job_->num_choices()), !r.gen.output.echo) {
    if (r.gen.output.echo) echo_ = EchoTexts(*ctx.tokenizer, r);
  }

 protected:
  bool WriteOpening(const Writer&) override { return true; }

  bool WriteDelta(int index, ChoiceDelta& d, const Writer& write) override {
    if (d.finished && d.finish == FinishReason::kError) {
      return WriteError(StrCat("generation failed: ", d.error), write);
    }
    // Every step's tokens get a chunk, even with no text yet: clients time tokens by chunks.
    if (d.tokens.empty() && !d.has_output() && !d.finished) return true;
    std::string text = std::move(d.text);
    if (!echoed_[static_cast<size_t>(index)]) {
      echoed_[static_cast<size_t>(index)] = true;
      text = echo_[static_cast<size_t>(index / job_->n())] + text;
    }
    Json choice = Json::object();
    choice["index"] = index;
    choice["text"] = text;
    if (output_.logprobs) {
      Json lp = EmptyCompletionLogprobs();
      AppendCompletionLogprobs(*ctx_.tokenizer, d.tokens, output_.return_tokens_as_token_ids,
                               output_.top_logprobs, &offsets_[static_cast<size_t>(index)], &lp);
      choice["logprobs"] = std::move(lp);
    } else {
      choice["logprobs"] = nullptr;
    }
    choice["finish_reason"] = FinishReasonJson(d, false);
    choice["stop_reason"] = StopReasonJson(d, job_->request(index / job_->n()));
    if (output_.return_token_ids) choice["token_ids"] = TokenIdsJson(d.tokens);
    return write(SseData(Chunk(std::move(choice))));
  }

 private:
  const ServingContext& ctx_;
  std::vector<size_t> offsets_;
  std::vector<bool> echoed_;
  std::vector<std::string> echo_;
};

}  // namespace

Reply CompletionService::Handle(const Json& body, const ClientGone& gone) const {
  CompletionRequest request;
  if (MaybeError e = ParseCompletionRequest(body, ctx_.limits, &request)) return Reply::Error(*e);
  std::vector<Request> requests;
  for (const PromptInput& p : request.prompts) {
    Request r = request.gen.engine;
    r.prompt = p.is_text ? ctx_.tokenizer->Encode(p.text, request.add_special_tokens) : p.ids;
    if (MaybeError e = CheckPromptLength(r.prompt.size(), r, ctx_.limits.max_model_len)) {
      return Reply::Error(*e);
    }
    requests.push_back(std::move(r));
  }
  ChoiceConfig config;
  config.tokenizer = ctx_.tokenizer;
  config.skip_special_tokens = request.gen.engine.skip_special_tokens;
  for (const std::string& s : request.gen.engine.stop) {
    config.longest_stop = std::max(config.longest_stop, s.size());
  }
  config.include_stop_str = request.gen.output.include_stop_str_in_output;
  std::unique_ptr<GenerationJob> job;
  if (auto e = GenerationJob::Start(*ctx_.engine, std::move(requests), config, &job)) {
    return Reply::Error(*e);
  }
  const OutputOptions& out = request.gen.output;
  if (out.stream) {
    Reply reply;
    reply.stream = std::make_unique<CompletionStream>(ctx_, std::move(job), request);
    return reply;
  }
  const int num = job->num_choices();
  struct Acc {
    std::string text;
    std::vector<TokenOut> tokens;
    ChoiceDelta last;
  };
  std::vector<Acc> acc(static_cast<size_t>(num));
  const bool finished = job->WaitAll(
      [&](int index, ChoiceDelta& d) {
        Acc& a = acc[static_cast<size_t>(index)];
        a.text += d.text;
        a.tokens.insert(a.tokens.end(), d.tokens.begin(), d.tokens.end());
        if (d.finished) a.last = std::move(d);
      },
      gone);
  if (!finished) return Reply::Error(ClientClosed());
  const std::vector<std::string> echo = out.echo ? EchoTexts(*ctx_.tokenizer, request)
                                                 : std::vector<std::string>();
  Json choices = Json::array();
  for (int i = 0; i < num; ++i) {
    Acc& a = acc[static_cast<size_t>(i)];
    if (a.last.finish == FinishReason::kError) {
      return Reply::Error(InternalError(StrCat("generation failed: ", a.last.error)));
    }
    const int prompt = i / job->n();
    Json c = Json::object();
    c["index"] = i;
    c["text"] = out.echo ? echo[static_cast<size_t>(prompt)] + a.text : a.text;
    if (out.logprobs) {
      Json lp = EmptyCompletionLogprobs();
      size_t offset = 0;
      AppendCompletionLogprobs(*ctx_.tokenizer, a.tokens, out.return_tokens_as_token_ids,
                               out.top_logprobs, &offset, &lp);
      c["logprobs"] = std::move(lp);
    } else {
      c["logprobs"] = nullptr;
    }
    c["finish_reason"] = FinishReasonJson(a.last, false);
    c["stop_reason"] = StopReasonJson(a.last, job->request(prompt));
    if (out.return_token_ids) {
      c["token_ids"] = TokenIdsJson(a.tokens);
      c["prompt_token_ids"] = job->request(prompt).prompt;
    }
    choices.push_back(std::move(c));
  }
  Json response = Json::object();
  response["id"] = RandomId("cmpl-");
  response["object"] = "text_completion";
  response["created"] = UnixSeconds();
  response["model"] = request.gen.model;
  response["choices"] = std::move(choices);
  response["usage"] = UsageJson(job->usage());
  return Reply{200, std::move(response), nullptr};
}

}  // namespace gs::server
