#include "util/npy.h"

#include <cstring>
#include <fstream>
#include <regex>

#include "util/mapped_file.h"

namespace gs {

Status WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape,
                       const float* data) {
  std::string dims;
  size_t count = 1;
  for (int64_t d : shape) {
    dims += std::to_string(d) + ",";
    count *= static_cast<size_t>(d);
  }
  if (shape.size() > 1) dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header, padded with spaces to 64 bytes, ends in \n.
  const size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return MakeError("cannot write ", path);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * sizeof(float)));
  out.close();
  if (!out) return MakeError("error while writing ", path);
  return Ok();
}

Expected<NpyArray> ReadNpyFloat32(const std::string& path) {
  GS_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  const uint8_t* p = file.data();
  if (file.size() < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0) {
    return MakeError(path, ": not a .npy file");
  }
  size_t header_len, offset;
  if (p[6] == 1) {
    header_len = p[8] | (p[9] << 8);
    offset = 10;
  } else {
    if (file.size() < 12) return MakeError(path, ": truncated .npy header");
    header_len = p[8] | (p[9] << 8) | (size_t{p[10]} << 16) | (size_t{p[11]} << 24);
    offset = 12;
  }
  if (offset + header_len > file.size()) return MakeError(path, ": truncated .npy header");
  const std::string header(reinterpret_cast<const char*>(p + offset), header_len);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos) {
    return MakeError(path, ": expected little-endian float32 in C order, header ", header);
  }
  std::smatch m;
  if (!std::regex_search(header, m, std::regex(R"('shape': \(([0-9, ]*)\))"))) {
    return MakeError(path, ": no shape in .npy header");
  }
  NpyArray arr;
  size_t count = 1;
  const std::string dims = m[1].str();
  const std::regex number("[0-9]+");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), e; it != e; ++it) {
    arr.shape.push_back(std::stoll(it->str()));
    count *= static_cast<size_t>(arr.shape.back());
  }
  const size_t data_off = offset + header_len;
  if (file.size() - data_off != count * sizeof(float)) {
    return MakeError(path, ": data size does not match shape");
  }
  arr.data.resize(count);
  std::memcpy(arr.data.data(), p + data_off, count * sizeof(float));
  return arr;
}

}  // namespace gs
