// Tiny image I/O for the examples: binary PPM (P6) / PGM (P5) in, PGM label maps and .npy arrays out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace radseg::examples {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;  // height x width x 3, packed RGB
};

// Reads an 8-bit binary PPM (P6) or PGM (P5, grey replicated to RGB). Throws std::runtime_error.
Image read_pnm(const std::string& path);

// Writes a label map as PGM: labels as grey levels (8-bit if all < 255, else 16-bit); -1 -> max value.
void write_label_pgm(const std::string& path, const std::int32_t* labels, int width, int height);

// Writes a C-contiguous array as NumPy .npy (dtype "<i4" or "<f4").
void write_npy(const std::string& path, const std::int32_t* data, const std::vector<int>& shape);
void write_npy(const std::string& path, const float* data, const std::vector<int>& shape);

}  // namespace radseg::examples
