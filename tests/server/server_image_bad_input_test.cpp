// Bad image input through the OpenAI server (issue 7): every bad image class gets a 400 whose
// message names the problem, and the next good request still succeeds. Also: file:// confinement
// (outside path, '..', symlink), remote URLs off by default and, when on, fetched from a local
// HTTP server with the size limit; request limits (images, pixels, budget); a runner without a
// vision encoder. Runs under ASan/UBSan too (the name holds "bad_input").
#include <thread>

#include "server/vision_server_util.h"

namespace gs::test {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> Head(const std::vector<uint8_t>& b, size_t n) {
  return std::vector<uint8_t>(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
}

// A PNG signature + IHDR claiming w x h, then nothing.
std::vector<uint8_t> PngHeader(uint32_t w, uint32_t h) {
  std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (uint32_t v : {w, h}) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
  }
  for (uint8_t v : {8, 2, 0, 0, 0, 0, 0, 0, 0}) b.push_back(v);
  return b;
}

class ImageBadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("gs_image_media_" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "allowed");
    fs::copy_file(GoldenImage("rgb_50x30.png"), dir_ / "allowed" / "ok.png",
                  fs::copy_options::overwrite_existing);
    fs::copy_file(GoldenImage("rgb_50x30.png"), dir_ / "outside.png",
                  fs::copy_options::overwrite_existing);
    std::error_code ec;
    fs::create_symlink(dir_ / "outside.png", dir_ / "allowed" / "link.png", ec);
    VisionServerOptions o;
    o.images.allowed_local_media_path = (dir_ / "allowed").string();
    o.images.max_images_per_request = 2;
    o.images.limits.max_pixels = 1'000'000;
    server_ = StartVisionServer(o).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static int port() { return server_->http().port(); }

  // The request fails with 400 naming `what`, then a good request succeeds.
  static void ExpectRefused(const Json& body, const std::string& what) {
    const HttpReply r = PostJson(port(), "/v1/chat/completions", body);
    ExpectApiError(r, 400, "BadRequestError");
    if (r.json.is_object() && r.json.contains("error")) {
      EXPECT_NE(r.json["error"]["message"].get<std::string>().find(what), std::string::npos)
          << r.body;
    }
    const HttpReply good = PostJson(port(), "/v1/chat/completions", Good());
    EXPECT_EQ(good.status, 200) << good.body;
  }
  static void ExpectRefusedUrl(const std::string& url, const std::string& what) {
    SCOPED_TRACE(url.substr(0, 80));
    ExpectRefused(ImageChat("hello", url, 2), what);
  }
  static Json Good() { return ImageChat("hello", DataUrl(ReadBytes(GoldenImage("rgb_50x30.png"))), 2); }

  static fs::path dir_;
  static server::ModelServer* server_;
};

fs::path ImageBadInput::dir_;
server::ModelServer* ImageBadInput::server_ = nullptr;

TEST_F(ImageBadInput, BadBytes) {
  const std::vector<uint8_t> png = ReadBytes(GoldenImage("rgb_50x30.png"));
  const std::vector<uint8_t> jpeg = ReadBytes(GoldenImage("exif1_40x24.jpg"));
  std::vector<uint8_t> corrupt = PngHeader(50, 30);
  for (int i = 0; i < 200; ++i) corrupt.push_back(static_cast<uint8_t>(i * 37 + 11));
  ExpectRefusedUrl(DataUrl(corrupt), "corrupt");
  ExpectRefusedUrl(DataUrl(Head(png, png.size() / 2)), "corrupt or truncated");
  ExpectRefusedUrl(DataUrl(Head(jpeg, jpeg.size() / 2), "jpeg"), "truncated");
  ExpectRefusedUrl("data:image/png;base64,", "empty");
  ExpectRefusedUrl(DataUrl(PngHeader(100000, 100000)), "the limit is");
  ExpectRefusedUrl(DataUrl({'B', 'M', 0x36, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0}, "bmp"),
                   "unsupported");
  ExpectRefusedUrl(DataUrl({'I', 'I', 42, 0, 8, 0, 0, 0, 0, 0}, "tiff"), "unsupported");
  ExpectRefusedUrl("data:image/png;base64,iVBOR@@@w0KGgo=", "invalid base64");
  ExpectRefusedUrl("data:image/png;base64,iVBORw0KGgoAA", "invalid base64");
  ExpectRefusedUrl("data:image/png,rawbytes", "only base64");
  ExpectRefusedUrl("data:image/png;base64", "without ','");
  ExpectRefusedUrl("ftp://example.com/a.png", "unsupported image URL");
  // This server's pixel limit (1e6), from the header.
  ExpectRefusedUrl(DataUrl(PngHeader(2000, 1000)), "the limit is 1000000 pixels");
}

TEST_F(ImageBadInput, LocalFiles) {
  const std::string allowed = (dir_ / "allowed").string();
  const HttpReply ok = PostJson(port(), "/v1/chat/completions",
                                ImageChat("hello", "file://" + allowed + "/ok.png", 2));
  EXPECT_EQ(ok.status, 200) << ok.body;
  // The file gives what the same bytes as a data: URL give.
  const HttpReply same = PostJson(port(), "/v1/chat/completions", Good());
  ASSERT_EQ(same.status, 200);
  EXPECT_EQ(ok.json["choices"][0]["token_ids"], same.json["choices"][0]["token_ids"]);
  ExpectRefusedUrl("file://" + (dir_ / "outside.png").string(), "outside --allowed-local-media-path");
  ExpectRefusedUrl("file://" + allowed + "/../outside.png", "outside --allowed-local-media-path");
  ExpectRefusedUrl("file://" + allowed + "/link.png", "outside --allowed-local-media-path");
  ExpectRefusedUrl("file://" + allowed + "/missing.png", "cannot open");
  ExpectRefusedUrl("file://" + allowed, "not a regular file");
  ExpectRefusedUrl("file://relative.png", "absolute path");
}

TEST_F(ImageBadInput, RequestLimits) {
  ExpectRefusedUrl("http://127.0.0.1:1/image.png", "--allow-remote-images");
  ExpectRefusedUrl("https://example.com/image.png", "--allow-remote-images");
  Json three = Good();
  for (int i = 0; i < 2; ++i) three["messages"][0]["content"].push_back(three["messages"][0]["content"][1]);
  ExpectRefused(three, "at most 2");
  Json budget = Good();
  budget["mm_processor_kwargs"]["max_soft_tokens"] = 100;
  ExpectRefused(budget, "not one of 70, 140, 280, 560, 1120");
  Json unknown = Good();
  unknown["mm_processor_kwargs"] = {{"do_pan_and_scan", true}};
  ExpectRefused(unknown, "not supported");
  Json pil = Good();
  pil["messages"][0]["content"][1] = {{"type", "image_pil"}, {"image_pil", "x"}};
  ExpectRefused(pil, "image_pil");
  Json no_url = Good();
  no_url["messages"][0]["content"][1] = {{"type", "image_url"}, {"image_url", {{"uri", "x"}}}};
  ExpectRefused(no_url, "image_url");
  // The image token typed into the text: more placeholders than images.
  Json typed = Good();
  typed["messages"][0]["content"][0]["text"] = "look <|image|> here";
  ExpectRefused(typed, "image placeholders");
}

TEST(ImageBadInputNoVision, RunnerWithoutVisionEncoder) {
  VisionServerOptions o;
  o.with_vision = false;
  auto server = StartVisionServer(o);
  ASSERT_TRUE(server);
  const int port = server->http().port();
  const HttpReply r = PostJson(port, "/v1/chat/completions",
                               ImageChat("hello", DataUrl(ReadBytes(GoldenImage("rgb_50x30.png"))), 2));
  ExpectApiError(r, 400, "BadRequestError");
  EXPECT_NE(r.body.find("no vision support"), std::string::npos) << r.body;
  Json text = {{"model", "vision"},
               {"messages", Json::array({{{"role", "user"}, {"content", "hello"}}})},
               {"max_tokens", 2}};
  EXPECT_EQ(PostJson(port, "/v1/chat/completions", text).status, 200);
}

// --allow-remote-images: fetched with cpp-httplib's client from a local server, with the size
// limit and HTTP errors reported.
TEST(ImageBadInputRemote, FetchesWithLimits) {
  const std::vector<uint8_t> png = ReadBytes(GoldenImage("rgb_50x30.png"));
  httplib::Server media;
  media.Get("/ok.png", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(png.begin(), png.end()), "image/png");
  });
  media.Get("/big.png", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(3u << 20, 'x'), "image/png");
  });
  const int media_port = media.bind_to_any_port("127.0.0.1");
  std::thread t([&] { media.listen_after_bind(); });
  VisionServerOptions o;
  o.images.allow_remote = true;
  o.images.limits.max_bytes = 1u << 20;
  o.images.fetch_timeout_seconds = 5;
  auto server = StartVisionServer(o);
  ASSERT_TRUE(server);
  const int port = server->http().port();
  const std::string base = "http://127.0.0.1:" + std::to_string(media_port);
  const HttpReply ok = PostJson(port, "/v1/chat/completions", ImageChat("hello", base + "/ok.png", 2));
  EXPECT_EQ(ok.status, 200) << ok.body;
  const HttpReply same = PostJson(port, "/v1/chat/completions",
                                  ImageChat("hello", DataUrl(png), 2));
  EXPECT_EQ(ok.json["choices"][0]["token_ids"], same.json["choices"][0]["token_ids"]);
  const HttpReply big = PostJson(port, "/v1/chat/completions", ImageChat("hello", base + "/big.png", 2));
  EXPECT_EQ(big.status, 400);
  EXPECT_NE(big.body.find("larger than the limit"), std::string::npos) << big.body;
  const HttpReply missing = PostJson(port, "/v1/chat/completions",
                                     ImageChat("hello", base + "/missing.png", 2));
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("HTTP status 404"), std::string::npos) << missing.body;
  media.stop();
  t.join();
}

}  // namespace
}  // namespace gs::test
