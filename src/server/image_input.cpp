#include "server/image_input.h"

#include <httplib.h>

#include <filesystem>
#include <fstream>

#include "util/str.h"
#include "vision/image_decode.h"
#include "vision/image_prompt.h"

namespace gs::server {
namespace {

namespace fs = std::filesystem;

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Expected<std::vector<uint8_t>> FromDataUrl(const std::string& url, const ImageInputOptions& o,
                                           const std::string& where) {
  const size_t comma = url.find(',');
  if (comma == std::string::npos) return MakeError(where, ": a data: URL without ','");
  const std::string meta = url.substr(5, comma - 5);
  if (meta.size() < 7 || meta.compare(meta.size() - 7, 7, ";base64") != 0) {
    return MakeError(where, ": only base64 data: URLs are accepted (data:image/<type>;base64,...)");
  }
  auto bytes = DecodeBase64(std::string_view(url).substr(comma + 1), o.limits.max_bytes);
  if (!bytes.ok()) return MakeError(where, ": ", bytes.error().message);
  return bytes;
}

Expected<std::vector<uint8_t>> ReadLimited(const fs::path& path, size_t max_bytes,
                                           const std::string& where) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(where, ": cannot open the image file");
  std::vector<uint8_t> bytes;
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof buf);
    bytes.insert(bytes.end(), buf, buf + in.gcount());
    if (bytes.size() > max_bytes) {
      return MakeError(where, ": the image file is larger than the limit of ", max_bytes, " bytes");
    }
  }
  if (in.bad()) return MakeError(where, ": error while reading the image file");
  return bytes;
}

// file://<absolute path> (percent-escapes decoded), resolved through symlinks and '..' and then
// required to lie inside the allowed directory (itself canonical).
Expected<std::vector<uint8_t>> FromFileUrl(const std::string& url, const ImageInputOptions& o,
                                           const std::string& where) {
  if (o.allowed_local_media_path.empty()) {
    return MakeError(where, ": file:// image URLs are disabled (start the server with "
                            "--allowed-local-media-path DIR to allow files under DIR)");
  }
  std::string raw = url.substr(7);
  if (StartsWith(raw, "localhost/")) raw = raw.substr(9);
  std::string path;
  for (size_t i = 0; i < raw.size(); ++i) {
    const bool escape = raw[i] == '%' && i + 2 < raw.size() && HexValue(raw[i + 1]) >= 0 &&
                        HexValue(raw[i + 2]) >= 0;
    if (escape) {
      path += static_cast<char>(HexValue(raw[i + 1]) * 16 + HexValue(raw[i + 2]));
      i += 2;
    } else {
      path += raw[i];
    }
  }
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string::npos) {
    return MakeError(where, ": a file:// URL must hold an absolute path (file:///dir/image.png)");
  }
  std::error_code ec;
  const fs::path real = fs::canonical(path, ec);
  if (ec) return MakeError(where, ": cannot open '", path, "': ", ec.message());
  const fs::path root(o.allowed_local_media_path);
  auto r = root.begin();
  auto p = real.begin();
  for (; r != root.end() && p != real.end() && *r == *p; ++r, ++p) {
  }
  if (r != root.end()) {
    return MakeError(where, ": '", path, "' is outside --allowed-local-media-path (",
                     o.allowed_local_media_path, ")");
  }
  if (!fs::is_regular_file(real, ec)) {
    return MakeError(where, ": '", path, "' is not a regular file");
  }
  return ReadLimited(real, o.limits.max_bytes, where);
}

Expected<std::vector<uint8_t>> FromHttpUrl(const std::string& url, const ImageInputOptions& o,
                                           const std::string& where) {
  if (!o.allow_remote) {
    return MakeError(where, ": remote image URLs are disabled (start the server with "
                            "--allow-remote-images, or send the image as a data: URL)");
  }
  const size_t scheme_end = url.find("://");
  const size_t path_start = url.find('/', scheme_end + 3);
  const std::string origin = url.substr(0, path_start);
  const std::string path = path_start == std::string::npos ? "/" : url.substr(path_start);
  if (origin.size() <= scheme_end + 3) return MakeError(where, ": the URL has no host");
  httplib::Client client(origin);
  if (!client.is_valid()) return MakeError(where, ": cannot make a client for '", origin, "'");
  const auto whole = static_cast<time_t>(o.fetch_timeout_seconds);
  const auto micros =
      static_cast<time_t>((o.fetch_timeout_seconds - static_cast<double>(whole)) * 1e6);
  client.set_connection_timeout(whole, micros);
  client.set_read_timeout(whole, micros);
  client.set_write_timeout(whole, micros);
  client.set_follow_location(true);
  std::vector<uint8_t> bytes;
  bool too_large = false;
  auto res = client.Get(path, [&](const char* data, size_t n) {
    if (bytes.size() + n > o.limits.max_bytes) {
      too_large = true;
      return false;
    }
    bytes.insert(bytes.end(), data, data + n);
    return true;
  });
  if (too_large) {
    return MakeError(where, ": the remote image is larger than the limit of ", o.limits.max_bytes,
                     " bytes");
  }
  if (!res) {
    return MakeError(where, ": fetching '", url, "' failed: ", httplib::to_string(res.error()));
  }
  if (res->status != 200) {
    return MakeError(where, ": fetching '", url, "' returned HTTP status ", res->status);
  }
  return bytes;
}

Expected<int> MaxSoftTokens(const Json& body, const ModelConfig& config) {
  if (!body.contains("mm_processor_kwargs") || body["mm_processor_kwargs"].is_null()) {
    return config.vision ? config.vision->default_output_length : 0;
  }
  const Json& kw = body["mm_processor_kwargs"];
  if (!kw.is_object()) return MakeError("mm_processor_kwargs must be an object");
  int value = config.vision ? config.vision->default_output_length : 0;
  for (const auto& [key, v] : kw.items()) {
    if (key != "max_soft_tokens") {
      return MakeError("mm_processor_kwargs.", key,
                       ": not supported (Gemma 4 takes max_soft_tokens)");
    }
    if (!v.is_number_integer()) {
      return MakeError("mm_processor_kwargs.max_soft_tokens must be an integer");
    }
    const int64_t n = v.get<int64_t>();
    bool ok = false;
    for (int b : kSupportedSoftTokenBudgets) ok |= n == b;
    if (!ok) {
      return MakeError("mm_processor_kwargs.max_soft_tokens ", n,
                       " is not one of 70, 140, 280, 560, 1120");
    }
    value = static_cast<int>(n);
  }
  return value;
}

// The URL of an image part, or an error naming what is wrong with the part.
Expected<std::string> ImagePartUrl(const Json& part, const std::string& where) {
  const std::string type = part["type"].get<std::string>();
  if (type == "image_pil" || type == "image_embeds") {
    return MakeError(where, ": content part type '", type, "' is not supported (send image_url)");
  }
  const Json& field = part.contains("image_url") ? part["image_url"] : Json();
  if (field.is_string()) return field.get<std::string>();  // Responses-style input_image
  if (field.is_object() && field.contains("url") && field["url"].is_string()) {
    return field["url"].get<std::string>();
  }
  return MakeError(where, ".image_url: expected {\"url\": \"data:image/...;base64,...\"}");
}

}  // namespace

Expected<std::vector<uint8_t>> DecodeBase64(std::string_view text, size_t max_bytes) {
  if (text.size() / 4 * 3 > max_bytes + 3) {
    return MakeError("the base64 image is about ", text.size() / 4 * 3,
                     " bytes; the limit is ", max_bytes);
  }
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0, pad = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    int v = -1;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    else if (c == '=') {
      ++pad;
      continue;
    }
    if (v < 0 || pad > 0) {
      const int byte = static_cast<uint8_t>(c);
      return MakeError("invalid base64: unexpected character ",
                       (byte >= 0x20 && byte < 0x7f) ? StrCat("'", std::string(1, c), "'")
                                                     : StrCat("byte ", byte),
                       " at offset ", i);
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  if (pad > 2 || bits >= 6 || (acc & ((1u << bits) - 1)) != 0) {
    return MakeError("invalid base64: the data ends in the middle of a byte");
  }
  if (out.size() > max_bytes) {
    return MakeError("the image has ", out.size(), " bytes; the limit is ", max_bytes);
  }
  return out;
}

Expected<RgbImage> FetchImage(const std::string& url, const ImageInputOptions& o,
                              const std::string& where) {
  Expected<std::vector<uint8_t>> bytes = MakeError("unused");
  if (StartsWith(url, "data:")) {
    bytes = FromDataUrl(url, o, where);
  } else if (StartsWith(url, "file://")) {
    bytes = FromFileUrl(url, o, where);
  } else if (StartsWith(url, "http://") || StartsWith(url, "https://")) {
    bytes = FromHttpUrl(url, o, where);
  } else {
    return MakeError(where,
                     ": unsupported image URL (expected data:, file://, http:// or https://)");
  }
  if (!bytes.ok()) return bytes.error();
  return DecodeImage(*bytes, where, o.limits);
}

MaybeError LoadChatImages(const Json& body, const ModelConfig& config,
                          const ImageInputOptions& options,
                          std::vector<std::shared_ptr<const ProcessedImage>>* images) {
  images->clear();
  if (!body.contains("messages") || !body["messages"].is_array()) return std::nullopt;
  struct Ref {
    std::string where;
    const Json* part;
  };
  std::vector<Ref> refs;
  const Json& messages = body["messages"];
  for (size_t m = 0; m < messages.size(); ++m) {
    if (!messages[m].is_object() || !messages[m].contains("content")) continue;
    const Json& content = messages[m]["content"];
    if (!content.is_array()) continue;
    for (size_t p = 0; p < content.size(); ++p) {
      const Json& part = content[p];
      if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) continue;
      const std::string type = part["type"].get<std::string>();
      if (type == "image_url" || type == "input_image" || type == "image_pil" ||
          type == "image_embeds") {
        refs.push_back({StrCat("messages[", m, "].content[", p, "]"), &part});
      }
    }
  }
  if (refs.empty()) return std::nullopt;
  if (!options.model_has_vision) {
    return BadRequest(StrCat("this model/runner has no vision support: ", refs[0].where,
                             " is an image"),
                      "messages");
  }
  if (static_cast<int>(refs.size()) > options.max_images_per_request) {
    return BadRequest(StrCat("the request has ", refs.size(), " images; at most ",
                             options.max_images_per_request,
                             " per request (--max-images-per-request)"),
                      "messages");
  }
  Expected<int> budget = MaxSoftTokens(body, config);
  if (!budget.ok()) return BadRequest(budget.error().message, "mm_processor_kwargs");
  Expected<ImageProcessorOptions> opts = ImageOptionsForModel(config, *budget, "image input");
  if (!opts.ok()) return BadRequest(opts.error().message, "messages");
  for (const Ref& r : refs) {
    Expected<std::string> url = ImagePartUrl(*r.part, r.where);
    if (!url.ok()) return BadRequest(url.error().message, "messages");
    Expected<RgbImage> rgb = FetchImage(*url, options, r.where);
    if (!rgb.ok()) return BadRequest(rgb.error().message, "messages");
    Expected<ProcessedImage> processed = PreprocessImage(*rgb, *opts);
    if (!processed.ok()) {
      return BadRequest(StrCat(r.where, ": ", processed.error().message), "messages");
    }
    images->push_back(std::make_shared<const ProcessedImage>(std::move(*processed)));
  }
  return std::nullopt;
}

}  // namespace gs::server
