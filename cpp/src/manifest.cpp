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
                                      (v == nullptr ? std::string("nothing")
                                                    : v->type == json::Value::Type::Number ? std::to_string(v->number)
                                                                                           : std::string("a non-number")) +
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
      throw Error(Status::PackageNotFound, "'" + path +
                                               "' does not exist (expected an export directory, its manifest.json "
                                               "or a .pt2 package)");
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
  const json::Value* aoti = root.get({"artefacts", "aoti"});
  const json::Value* engine = root.get({"artefacts", "pipeline_engine"});
  const json::Value* shape = aoti ? aoti->get({"inputs", "frame", "shape"}) : nullptr;
  const json::Value* imgsz = engine ? engine->find("imgsz") : nullptr;
  if (shape && shape->type == json::Value::Type::Array && shape->array.size() == 4) {
    m.height = positive_int(&shape->array[1], "artefacts.aoti.inputs.frame.shape[1]", m.path);
    m.width = positive_int(&shape->array[2], "artefacts.aoti.inputs.frame.shape[2]", m.path);
  } else if (imgsz && imgsz->type == json::Value::Type::Array && imgsz->array.size() == 2) {
    m.height = positive_int(&imgsz->array[0], "artefacts.pipeline_engine.imgsz[0]", m.path);
    m.width = positive_int(&imgsz->array[1], "artefacts.pipeline_engine.imgsz[1]", m.path);
  } else {
    throw Error(Status::Manifest, m.path +
                                      ": no input size (artefacts.aoti.inputs.frame.shape or "
                                      "artefacts.pipeline_engine.imgsz): export with `radseg-edge export --format aoti` "
                                      "or a TensorRT engine with --imgsz HxW");
  }

  // Class names: vocabulary.names (AOTInductor export) or artefacts.vocabulary.names (ONNX/TensorRT export).
  const json::Value* names = root.get({"vocabulary", "names"});
  if (names == nullptr) names = root.get({"artefacts", "vocabulary", "names"});
  if (names && names->type == json::Value::Type::Array) {
    for (const auto& c : names->array) m.classes.push_back(c.type == json::Value::Type::String ? c.string : "");
  }
  const json::Value* k = root.get({"vocabulary", "num_classes"});
  m.num_classes = k && k->type != json::Value::Type::Null ? positive_int(k, "vocabulary.num_classes", m.path)
                                                           : static_cast<int>(m.classes.size());
  if (m.num_classes < 1) {
    throw Error(Status::Manifest, m.path + ": no 'vocabulary.num_classes' and no class names");
  }
  if (!m.classes.empty() && static_cast<int>(m.classes.size()) != m.num_classes) {
    throw Error(Status::Manifest, m.path + ": " + std::to_string(m.classes.size()) +
                                      " class names but 'vocabulary.num_classes' is " + std::to_string(m.num_classes));
  }
  if (const json::Value* d = aoti ? aoti->find("device") : nullptr; d && d->type == json::Value::Type::String) {
    m.device = d->string;
  }
  if (!package_hint.empty()) {
    m.package_path = package_hint.string();
  } else if (const json::Value* p = aoti ? aoti->find("file") : nullptr; p && p->type == json::Value::Type::String) {
    m.package_path = resolve(folder, p->string);
  }
  if (const json::Value* e = engine ? engine->find("file") : nullptr; e && e->type == json::Value::Type::String) {
    m.engine_path = resolve(folder, e->string);
  }
  if (m.package_path.empty() && m.engine_path.empty()) {
    throw Error(Status::Manifest,
                m.path + ": names neither an 'artefacts.aoti' package (.pt2) nor an 'artefacts.pipeline_engine' (TensorRT)");
  }
  return m;
}

}  // namespace radseg
