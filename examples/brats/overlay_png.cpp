// PNG writing for the overlays (overlay.hpp). stb_image_write is compiled here with
// STB_IMAGE_WRITE_STATIC, so its functions are private to this file and another .cpp of the
// binary may compile its own copy (e.g. for the learning-curve plot) without a clash.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "overlay.hpp"
#include "revox/core/error.hpp"

namespace revox::brats {

void write_png(const std::filesystem::path& path, const RgbImage& image) {
  REVOX_CHECK(image.width > 0 && image.height > 0 &&
                  image.pixels.size() == static_cast<std::size_t>(image.width) *
                                             static_cast<std::size_t>(image.height) * 3,
              "PNG '", path.string(), "': the image is empty or its pixel buffer is ",
              image.pixels.size(), " bytes for ", image.width, " x ", image.height, " RGB");
  // Written next to the target and renamed over it, so a failed write leaves no partial PNG.
  const std::filesystem::path temporary = path.string() + ".tmp";
  const int ok = stbi_write_png(temporary.c_str(), image.width, image.height, 3,
                                image.pixels.data(), image.width * 3);
  std::error_code error;
  if (ok == 0) {
    std::filesystem::remove(temporary, error);
    throw Error("PNG '" + path.string() + "': cannot write it (stb_image_write failed; is the "
                "folder writable and the disk not full?)");
  }
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    throw Error("PNG '" + path.string() + "': cannot rename the temporary file into place");
  }
}

}  // namespace revox::brats
