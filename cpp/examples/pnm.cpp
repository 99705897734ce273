#include "pnm.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <stdexcept>

namespace radseg::examples {
namespace {

// Next header token of a PNM file, skipping whitespace and '#' comments.
std::string token(std::istream& in) {
  std::string t;
  int c = in.get();
  while (c != EOF) {
    if (c == '#') {
      while (c != EOF && c != '\n') c = in.get();
    } else if (!std::isspace(c)) {
      break;
    }
    c = in.get();
  }
  while (c != EOF && !std::isspace(c)) {
    t += static_cast<char>(c);
    c = in.get();
  }
  return t;  // the single whitespace after the last header token is consumed here
}

int header_int(std::istream& in, const std::string& path, const char* what) {
  const std::string t = token(in);
  if (t.empty() || !std::all_of(t.begin(), t.end(), ::isdigit)) {
    throw std::runtime_error(path + ": bad PNM header (" + what + ")");
  }
  return std::stoi(t);
}

void write_npy_raw(const std::string& path, const char* descr, const void* data, size_t item,
                   const std::vector<int>& shape) {
  std::string dims;
  size_t count = 1;
  for (int d : shape) {
    dims += std::to_string(d) + ", ";
    count *= static_cast<size_t>(d);
  }
  if (shape.size() > 1) dims.erase(dims.size() - 2);  // "(3,)" keeps its comma; "(2, 3)" does not
  std::string header = "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.write(reinterpret_cast<const char*>(magic), 8);
  const std::uint16_t len = static_cast<std::uint16_t>(header.size());
  const unsigned char len_le[2] = {static_cast<unsigned char>(len & 0xFF), static_cast<unsigned char>(len >> 8)};
  out.write(reinterpret_cast<const char*>(len_le), 2);
  out << header;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(count * item));
}

}  // namespace

Image read_pnm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open image " + path);
  const std::string magic = token(in);
  if (magic != "P6" && magic != "P5") {
    throw std::runtime_error(path + ": not a binary PPM (P6) or PGM (P5) image; convert it, e.g. "
                                    "`python -c \"import cv2; cv2.imwrite('x.ppm', cv2.imread('x.jpg'))\"`");
  }
  Image img;
  img.width = header_int(in, path, "width");
  img.height = header_int(in, path, "height");
  const int maxval = header_int(in, path, "maxval");
  if (img.width <= 0 || img.height <= 0 || maxval != 255) {
    throw std::runtime_error(path + ": only 8-bit (maxval 255) images of positive size are supported");
  }
  const size_t pixels = static_cast<size_t>(img.width) * img.height;
  const size_t channels = magic == "P6" ? 3 : 1;
  std::vector<std::uint8_t> raw(pixels * channels);
  in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
  if (static_cast<size_t>(in.gcount()) != raw.size()) throw std::runtime_error(path + ": truncated pixel data");
  if (channels == 3) {
    img.rgb = std::move(raw);
  } else {
    img.rgb.resize(pixels * 3);
    for (size_t i = 0; i < pixels; ++i) img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = raw[i];
  }
  return img;
}

void write_label_pgm(const std::string& path, const std::int32_t* labels, int width, int height) {
  const size_t n = static_cast<size_t>(width) * height;
  const std::int32_t top = n ? *std::max_element(labels, labels + n) : 0;
  const int maxval = top < 255 ? 255 : 65535;
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << "P5\n" << width << " " << height << "\n" << maxval << "\n";
  for (size_t i = 0; i < n; ++i) {
    const int v = labels[i] < 0 ? maxval : labels[i];
    if (maxval == 255) {
      out.put(static_cast<char>(v));
    } else {  // 16-bit PGM samples are big-endian
      out.put(static_cast<char>(v >> 8));
      out.put(static_cast<char>(v & 0xFF));
    }
  }
}

void write_npy(const std::string& path, const std::int32_t* data, const std::vector<int>& shape) {
  write_npy_raw(path, "<i4", data, 4, shape);
}

void write_npy(const std::string& path, const float* data, const std::vector<int>& shape) {
  write_npy_raw(path, "<f4", data, 4, shape);
}

}  // namespace radseg::examples
