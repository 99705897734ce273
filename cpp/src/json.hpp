// Minimal JSON reader for manifest.json (objects, arrays, strings, numbers, booleans, null).
// Enough for the manifests radseg-edge writes; not a general-purpose library.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace radseg::json {

struct Value {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;

  // Member `key` of an object, or nullptr (also when this is not an object).
  const Value* find(const std::string& key) const;
  // Follows a path of object keys, e.g. get({"input", "height"}); nullptr if any step is missing.
  const Value* get(std::initializer_list<const char*> path) const;
};

// Parses `text`; throws std::runtime_error("... at byte N") on malformed input.
Value parse(const std::string& text);

}  // namespace radseg::json
