// Reading manifest.json written by `radseg-edge export --format aoti` (radseg_edge/export/aoti.py).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "json.hpp"
#include "radseg_edge/segmenter.hpp"

namespace fs = std::filesystem;

namespace radseg {
namespace {

std::string resolve(const fs::path& folder, const std::string& name) {
  if (name.empty()) return name;
  const fs::path p(name);
  return p.is_absolute() ? p.string() : (folder / p).string();
}

int positive_int(const json::Value* v, const std::string& what, const std::string& path) {
  if (v == nullptr || v->type != json::Value::Type::Number || v->number < 1 ||
      v->number != static_cast<double>(static_cast<int>(v->number))) {
    throw Error(Status::Manifest, path + ": '" + what + "' must be a positive integer; found " +
                                      (v == nullptr ? std::string("nothing") : std::string("another value")) +
                                      ". Re-export with `radseg-edge export --format aoti`.");
  }
  return static_cast<int>(v->number);
}

}  // namespace

Manifest Manifest::load(const std::string& path) {
  std::error_code ec;
  fs::path given(path);
  fs::path manifest_path;
  fs::path package_hint;
  if (fs::is_directory(given, ec)) {
    manifest_path = given / "manifest.json";
  } else if (given.extension() == ".json") {
    manifest_path = given;
  } else {
    package_hint = given;
    manifest_path = given.parent_path() / "manifest.json";
    if (!fs::exists(given, ec)) {
      throw Error(Status::PackageNotFound, "model package '" + path + "' does not exist");
    }
  }
  if (!fs::exists(manifest_path, ec)) {
    throw Error(Status::PackageNotFound,
                "no manifest.json at '" + manifest_path.string() +
                    "': pass an export directory made by `radseg-edge export --format aoti`, its manifest.json, "
                    "or a .pt2 package with manifest.json beside it");
  }
  std::ifstream in(manifest_path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  json::Value root;
  try {
    root = json::parse(buffer.str());
  } catch (const std::exception& e) {
    throw Error(Status::Manifest, manifest_path.string() + ": " + e.what());
  }
  if (root.type != json::Value::Type::Object) {
    throw Error(Status::Manifest, manifest_path.string() + ": expected a JSON object at the top level");
  }

  Manifest m;
  m.path = manifest_path.string();
  const fs::path folder = manifest_path.parent_path();
  m.height = positive_int(root.get({"input", "height"}), "input.height", m.path);
  m.width = positive_int(root.get({"input", "width"}), "input.width", m.path);

  if (const json::Value* classes = root.find("classes"); classes && classes->type == json::Value::Type::Array) {
    for (const auto& c : classes->array) m.classes.push_back(c.type == json::Value::Type::String ? c.string : "");
  }
  const json::Value* k = root.find("num_classes");
  m.num_classes = k ? positive_int(k, "num_classes", m.path) : static_cast<int>(m.classes.size());
  if (m.num_classes < 1) throw Error(Status::Manifest, m.path + ": no 'num_classes' and no 'classes' list");
  if (!m.classes.empty() && static_cast<int>(m.classes.size()) != m.num_classes) {
    throw Error(Status::Manifest, m.path + ": 'classes' has " + std::to_string(m.classes.size()) +
                                      " names but 'num_classes' is " + std::to_string(m.num_classes));
  }
  if (const json::Value* d = root.find("device"); d && d->type == json::Value::Type::String) m.device = d->string;

  if (!package_hint.empty()) {
    m.package_path = package_hint.string();
  } else if (const json::Value* p = root.find("package"); p && p->type == json::Value::Type::String) {
    m.package_path = resolve(folder, p->string);
  }
  if (const json::Value* e = root.get({"tensorrt", "engine"}); e && e->type == json::Value::Type::String) {
    m.engine_path = resolve(folder, e->string);
  }
  if (m.package_path.empty() && m.engine_path.empty()) {
    throw Error(Status::Manifest, m.path + ": names neither a 'package' (.pt2) nor a 'tensorrt.engine'");
  }
  return m;
}

}  // namespace radseg
