// The engine key check of the C++ TensorRT backend: the same record (<engine>.json, written by
// radseg_edge.export.cache.write_key), the same fields and the same refusal messages as the Python
// backend (radseg_edge.export.cache.verify_engine). No TensorRT or CUDA here: the caller describes the device.
#pragma once

#include <string>
#include <vector>

namespace radseg {

// What an engine depends on about the machine (fields and order of Python's DeviceDescription).
struct DeviceDescription {
  std::string gpu_name;
  std::string sm;        // "8.7"
  long long sm_count = 0;
  std::string tensorrt;  // "10.3.0.26"
  std::string cuda;      // "12.6"
  std::string l4t;       // "36.4.3" on Jetson, "" elsewhere
};

// The key an engine must have here: the device, precision, shape profile text, and the files to hash.
struct ExpectedKey {
  DeviceDescription device;
  std::string precision;
  std::string shape_profile;
  std::string onnx_path;
  std::vector<std::string> plugin_paths;
};

// Hex SHA-256 of a file's bytes; throws Error(PackageNotFound) when it cannot be read.
std::string sha256_file(const std::string& path);

// The L4T release ("36.4.3") from /etc/nv_tegra_release, or "" when not on a Jetson.
std::string read_l4t_release(const std::string& path = "/etc/nv_tegra_release");

// Refuses an engine not built for `expected`: throws Error(PackageCorrupt) with Python's message when the
// record is missing or unreadable, a key field differs (all listed), or the engine changed after it was built.
// A recorded TensorRT version "10.3.0" matches the library "10.3.0.26" (Python packages differ in digits).
void verify_engine(const std::string& engine_path, const ExpectedKey& expected);

}  // namespace radseg
