#include "engine_key.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "json.hpp"
#include "radseg_edge/segmenter.hpp"

namespace radseg {
namespace {

// FIPS 180-4 SHA-256.
class Sha256 {
 public:
  void update(const unsigned char* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      block_[fill_++] = data[i];
      if (fill_ == 64) {
        compress();
        fill_ = 0;
      }
    }
    bits_ += static_cast<std::uint64_t>(n) * 8;
  }

  std::string hex() {
    const std::uint64_t bits = bits_;
    unsigned char pad = 0x80;
    update(&pad, 1);
    unsigned char zero = 0;
    while (fill_ != 56) update(&zero, 1);
    for (int i = 7; i >= 0; --i) {
      unsigned char b = static_cast<unsigned char>(bits >> (8 * i));
      update(&b, 1);
    }
    std::string out;
    char buf[9];
    for (std::uint32_t v : h_) {
      std::snprintf(buf, sizeof(buf), "%08x", v);
      out += buf;
    }
    return out;
  }

 private:
  static std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress() {
    static const std::uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = (std::uint32_t(block_[4 * i]) << 24) | (std::uint32_t(block_[4 * i + 1]) << 16) |
             (std::uint32_t(block_[4 * i + 2]) << 8) | std::uint32_t(block_[4 * i + 3]);
    }
    for (int i = 16; i < 64; ++i) {
      const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  std::array<std::uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char block_[64] = {};
  size_t fill_ = 0;
  std::uint64_t bits_ = 0;
};

// Python's repr() of the values a key holds: 'text', 123, ['a', 'b'].
std::string py_repr(const json::Value* v) {
  if (v == nullptr || v->type == json::Value::Type::Null) return "None";
  switch (v->type) {
    case json::Value::Type::String: return "'" + v->string + "'";
    case json::Value::Type::Bool: return v->boolean ? "True" : "False";
    case json::Value::Type::Number: {
      std::ostringstream s;
      if (v->number == static_cast<double>(static_cast<long long>(v->number))) {
        s << static_cast<long long>(v->number);
      } else {
        s << v->number;
      }
      return s.str();
    }
    case json::Value::Type::Array: {
      std::string out = "[";
      for (size_t i = 0; i < v->array.size(); ++i) out += (i ? ", " : "") + py_repr(&v->array[i]);
      return out + "]";
    }
    default: return "{...}";
  }
}

json::Value string_value(const std::string& s) {
  json::Value v;
  v.type = json::Value::Type::String;
  v.string = s;
  return v;
}

json::Value number_value(long long n) {
  json::Value v;
  v.type = json::Value::Type::Number;
  v.number = static_cast<double>(n);
  return v;
}

bool same(const json::Value* a, const json::Value& b) { return a != nullptr && py_repr(a) == py_repr(&b); }

}  // namespace

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(Status::PackageNotFound, "cannot read '" + path + "' to hash it");
  Sha256 sha;
  std::array<char, 1 << 16> buf;
  while (f) {
    f.read(buf.data(), buf.size());
    sha.update(reinterpret_cast<const unsigned char*>(buf.data()), static_cast<size_t>(f.gcount()));
  }
  return sha.hex();
}

std::string read_l4t_release(const std::string& path) {
  std::ifstream f(path);
  std::string first;
  if (!f || !std::getline(f, first)) return "";
  std::string major, revision;
  std::stringstream parts(first);
  std::string part;
  while (std::getline(parts, part, ',')) {
    part.erase(0, part.find_first_not_of(" #"));
    if (part.rfind("R", 0) == 0 && part.find('(') != std::string::npos) {
      major = part.substr(1, part.find(' ') - 1);
    } else if (part.rfind("REVISION:", 0) == 0) {
      revision = part.substr(9);
      revision.erase(0, revision.find_first_not_of(' '));
      revision.erase(revision.find_last_not_of(" \r\n") + 1);
    }
  }
  return !major.empty() && !revision.empty() ? major + "." + revision : "";
}

void verify_engine(const std::string& engine_path, const ExpectedKey& expected) {
  namespace fs = std::filesystem;
  const std::string name = fs::path(engine_path).filename().string();
  const std::string record_path = engine_path + ".json";
  std::error_code ec;
  if (!fs::is_regular_file(engine_path, ec)) {
    throw Error(Status::PackageNotFound, "engine " + engine_path +
                                             " does not exist; build it with `radseg-edge export --format engine-fp16`");
  }
  if (!fs::is_regular_file(record_path, ec)) {
    throw Error(Status::PackageCorrupt, "engine " + engine_path + " has no key record " +
                                            fs::path(record_path).filename().string() +
                                            ", so it cannot be checked against this machine; rebuild it with radseg-edge");
  }
  json::Value record;
  try {
    std::ifstream f(record_path);
    std::stringstream text;
    text << f.rdbuf();
    record = json::parse(text.str());
  } catch (const std::exception& e) {
    throw Error(Status::PackageCorrupt,
                "engine key record " + record_path + " is unreadable (" + e.what() + "); rebuild the engine");
  }
  const DeviceDescription& d = expected.device;
  std::vector<std::pair<std::string, json::Value>> current = {
      {"device.gpu_name", string_value(d.gpu_name)},
      {"device.sm", string_value(d.sm)},
      {"device.sm_count", number_value(d.sm_count)},
      {"device.tensorrt", string_value(d.tensorrt)},
      {"device.cuda", string_value(d.cuda)},
      {"device.l4t", string_value(d.l4t)},
      {"precision", string_value(expected.precision)},
      {"shape_profile", string_value(expected.shape_profile)},
      {"onnx_sha256", string_value(sha256_file(expected.onnx_path))},
  };
  json::Value plugins;
  plugins.type = json::Value::Type::Array;
  for (const auto& p : expected.plugin_paths) plugins.array.push_back(string_value(sha256_file(p)));
  current.emplace_back("plugin_sha256", plugins);

  std::vector<std::string> absent;
  for (const auto& [key, value] : current) {
    if (key != "plugin_sha256" && record.find(key) == nullptr) absent.push_back(key);
  }
  std::sort(absent.begin(), absent.end());
  std::string missing;
  for (const auto& key : absent) missing += (missing.empty() ? "" : ", ") + key;
  if (!missing.empty()) {
    throw Error(Status::PackageCorrupt, "engine key record lacks " + missing + "; rebuild the engine");
  }
  // a Python package may report "10.3.0" for the library "10.3.0.26"
  const json::Value* recorded_trt = record.find("device.tensorrt");
  if (recorded_trt->type == json::Value::Type::String && !recorded_trt->string.empty() &&
      d.tensorrt.rfind(recorded_trt->string + ".", 0) == 0) {
    current[3].second = string_value(recorded_trt->string);
  }
  json::Value no_plugins;
  no_plugins.type = json::Value::Type::Array;
  std::string diffs;
  for (const auto& [key, value] : current) {
    const json::Value* mine = record.find(key);
    if (key == "plugin_sha256" && mine == nullptr) mine = &no_plugins;
    if (!same(mine, value)) {
      diffs += (diffs.empty() ? "" : "; ") + key + ": engine has " + py_repr(mine) + ", this machine needs " +
               py_repr(&value);
    }
  }
  if (!diffs.empty()) {
    throw Error(Status::PackageCorrupt, "refusing engine " + name + ": it was built for another configuration (" +
                                            diffs + "). Rebuild it on this machine.");
  }
  const json::Value* engine_sha = record.find("engine_sha256");
  if (engine_sha && engine_sha->type == json::Value::Type::String && !engine_sha->string.empty() &&
      engine_sha->string != sha256_file(engine_path)) {
    throw Error(Status::PackageCorrupt, "refusing engine " + name + ": the file changed after it was built; rebuild it");
  }
}

}  // namespace radseg
