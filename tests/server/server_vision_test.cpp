// Image input through the OpenAI server (issue 7), over HTTP with cpp-httplib's client, on the
// transformers golden vision checkpoint (tests/server/vision_server_util.h):
//  * a chat request with a data: URL image expands the template's image token to boi + n × image
//    + eoi with n = transformers' soft-token count for that image and budget, and its greedy
//    tokens equal gs::Generate's with the same image encoded directly (the CPU path the golden
//    tests prove against transformers);
//  * prefix caching keys image blocks by the image: the same text with another image of the same
//    size hits nothing and answers differently, the same image again hits the whole prompt and
//    answers the same;
//  * an image larger than --max-num-batched-tokens still runs, in one step, with the same output.
#include <algorithm>

#include "server/vision_server_util.h"

namespace gs::test {
namespace {

constexpr int kBoi = 500, kImage = 501, kEoi = 502;

std::vector<int32_t> Ids(const Json& j) { return j.get<std::vector<int32_t>>(); }

// transformers' soft-token count for a golden image at budget 70 (reference.json).
int GoldenSoftTokens(const std::string& image) {
  const auto ref = golden::ReadJsonFile(golden::VisionRoot() + "/model/reference.json");
  for (const auto& p : ref["prompts"]) {
    for (size_t i = 0; i < p["images"].size(); ++i) {
      if (p["images"][i] == image) return p["num_soft_tokens"][i];
    }
  }
  return -1;
}

std::vector<double> Logprobs(const Json& reply) {
  std::vector<double> out;
  for (const auto& c : reply["choices"][0]["logprobs"]["content"]) out.push_back(c["logprob"]);
  return out;
}

TEST(ServerVision, DataUrlMatchesGeneratePath) {
  auto server = StartVisionServer();
  ASSERT_TRUE(server);
  const int port = server->http().port();
  const std::string file = GoldenImage("rgb_640x480.png");
  const Json body = ImageChat("hello world the model", DataUrl(ReadBytes(file)), 8);
  const HttpReply r = PostJson(port, "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;

  // The template's prompt with its single image token (as /tokenize renders it)...
  const HttpReply tk = PostJson(port, "/tokenize", {{"model", "vision"},
                                                    {"messages", body["messages"]},
                                                    {"add_generation_prompt", true}});
  ASSERT_EQ(tk.status, 200) << tk.body;
  std::vector<int32_t> want;
  int first_image = -1;
  const int n = GoldenSoftTokens("rgb_640x480.png");
  ASSERT_EQ(n, 63);
  for (int32_t id : Ids(tk.json["tokens"])) {
    if (id != kImage) {
      want.push_back(id);
      continue;
    }
    want.push_back(kBoi);
    first_image = static_cast<int>(want.size());
    want.insert(want.end(), static_cast<size_t>(n), kImage);
    want.push_back(kEoi);
  }
  ASSERT_GE(first_image, 0) << "the template wrote no image token";
  // ...is what the server ran, with the image's transformers soft-token count.
  const std::vector<int32_t> prompt = Ids(r.json["prompt_token_ids"]);
  EXPECT_EQ(prompt, want);
  EXPECT_EQ(r.json["usage"]["prompt_tokens"], static_cast<int>(want.size()));

  const std::vector<int32_t> oracle =
      VisionModelDir::Get().Oracle(want, {{file, first_image}}, 70, 8);
  EXPECT_EQ(Ids(r.json["choices"][0]["token_ids"]), oracle);
  EXPECT_EQ(Metric(port, "gemmaserve:images_encoded_total"), 1);

  // Streaming gives the same tokens.
  Json stream = body;
  stream["stream"] = true;
  const HttpReply s = PostJson(port, "/v1/chat/completions", stream);
  ASSERT_EQ(s.status, 200);
  std::vector<int32_t> streamed;
  size_t pos = 0;
  while ((pos = s.body.find("data: {", pos)) != std::string::npos) {
    const size_t end = s.body.find("\n\n", pos);
    const Json chunk = Json::parse(s.body.substr(pos + 6, end - pos - 6));
    for (const auto& c : chunk["choices"]) {
      if (c.contains("token_ids")) {
        for (int32_t id : Ids(c["token_ids"])) streamed.push_back(id);
      }
    }
    pos = end;
  }
  EXPECT_EQ(streamed, oracle);
}

TEST(ServerVision, PrefixCacheKeysBlocksByImage) {
  auto server = StartVisionServer();
  ASSERT_TRUE(server);
  const int port = server->http().port();
  // Same size (40 x 24), different pixels (the second is the first rotated by 180 degrees): the
  // two prompts have identical token ids.
  const std::string a = DataUrl(ReadBytes(GoldenImage("exif1_40x24.jpg")), "jpeg");
  const std::string b = DataUrl(ReadBytes(GoldenImage("exif3_40x24.jpg")), "jpeg");
  // Image first, then enough text that the prompt's last block boundary (where the sliding-state
  // snapshot of a cached prompt is taken) lies after the image.
  auto chat = [&](const std::string& url) {
    Json content = Json::array();
    content.push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
    content.push_back({{"type", "text"},
                       {"text", "hello world the model answer question because about the "
                                "server random weights gemma token"}});
    Json body = ImageChat("", url, 6);
    body["messages"][0]["content"] = content;
    return body;
  };
  auto hits = [&] { return Metric(port, "vllm:prefix_cache_hits_total"); };
  const HttpReply ra = PostJson(port, "/v1/chat/completions", chat(a));
  ASSERT_EQ(ra.status, 200) << ra.body;
  const std::vector<int32_t> prompt = Ids(ra.json["prompt_token_ids"]);
  const int len = static_cast<int>(prompt.size());
  const auto first_image = std::find(prompt.begin(), prompt.end(), kImage) - prompt.begin();
  ASSERT_LT(first_image, 16) << "the image should start in the first block";

  const double h0 = hits();
  const HttpReply rb = PostJson(port, "/v1/chat/completions", chat(b));
  ASSERT_EQ(rb.status, 200) << rb.body;
  EXPECT_EQ(Ids(rb.json["prompt_token_ids"]), prompt) << "same size -> same token ids";
  EXPECT_EQ(hits() - h0, 0) << "a different image must not hit the cached blocks";
  EXPECT_NE(Logprobs(rb.json), Logprobs(ra.json));

  const double h1 = hits();
  const HttpReply ra2 = PostJson(port, "/v1/chat/completions", chat(a));
  ASSERT_EQ(ra2.status, 200) << ra2.body;
  EXPECT_EQ(hits() - h1, (len - 1) / 16 * 16) << "the same image hits every full block";
  EXPECT_EQ(Ids(ra2.json["choices"][0]["token_ids"]), Ids(ra.json["choices"][0]["token_ids"]));
  const auto la = Logprobs(ra.json), la2 = Logprobs(ra2.json);
  ASSERT_EQ(la.size(), la2.size());
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], la2[i], 1e-4);
  // Both answers are the Generate path's.
  EXPECT_EQ(Ids(rb.json["choices"][0]["token_ids"]),
            VisionModelDir::Get().Oracle(prompt, {{GoldenImage("exif3_40x24.jpg"),
                                                   static_cast<int>(first_image)}}, 70, 6));
  EXPECT_EQ(Ids(ra.json["choices"][0]["token_ids"]),
            VisionModelDir::Get().Oracle(prompt, {{GoldenImage("exif1_40x24.jpg"),
                                                   static_cast<int>(first_image)}}, 70, 6));
}

TEST(ServerVision, ImageLargerThanStepBudget) {
  VisionServerOptions o;
  o.max_num_batched_tokens = 16;  // the image has 63 soft tokens
  auto server = StartVisionServer(o);
  ASSERT_TRUE(server);
  const int port = server->http().port();
  const std::string file = GoldenImage("rgb_640x480.png");
  const HttpReply r = PostJson(port, "/v1/chat/completions",
                               ImageChat("hello world the model answer question", DataUrl(ReadBytes(file)), 6));
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<int32_t> prompt = Ids(r.json["prompt_token_ids"]);
  const int first = static_cast<int>(std::find(prompt.begin(), prompt.end(), kImage) - prompt.begin());
  EXPECT_EQ(Ids(r.json["choices"][0]["token_ids"]),
            VisionModelDir::Get().Oracle(prompt, {{file, first}}, 70, 6));
}

TEST(ServerVision, TwoImagesAndBudget140) {
  auto server = StartVisionServer();
  ASSERT_TRUE(server);
  const int port = server->http().port();
  const std::string f1 = GoldenImage("rgb_640x480.png"), f2 = GoldenImage("rgb_300x900.png");
  Json body = ImageChat("compare", DataUrl(ReadBytes(f1)), 5, 140);
  body["messages"][0]["content"].push_back(
      {{"type", "image_url"}, {"image_url", {{"url", DataUrl(ReadBytes(f2))}}}});
  const HttpReply r = PostJson(port, "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<int32_t> prompt = Ids(r.json["prompt_token_ids"]);
  std::vector<int> firsts;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] == kImage && prompt[i - 1] == kBoi) firsts.push_back(static_cast<int>(i));
  }
  ASSERT_EQ(firsts.size(), 2u);
  EXPECT_EQ(Ids(r.json["choices"][0]["token_ids"]),
            VisionModelDir::Get().Oracle(prompt, {{f1, firsts[0]}, {f2, firsts[1]}}, 140, 5));
}

}  // namespace
}  // namespace gs::test
