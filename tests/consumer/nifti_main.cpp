// Builds against an installed revox::nifti: writes a label map and reads it back.
#include <cstdio>
#include <filesystem>

#include "revox/io/nifti.hpp"

int main() {
  namespace fs = std::filesystem;
  const fs::path path = fs::temp_directory_path() / "revox_consumer_labels.nii.gz";
  revox::Tensor<std::uint8_t> labels = revox::Tensor<std::uint8_t>::zeros(revox::Shape5{1, 1, 3, 4, 5});
  labels[7] = 4;
  revox::io::write_nifti_labels(path, labels, revox::io::default_geometry({1.0, 1.0, 2.0}));
  const revox::io::NiftiVolume volume = revox::io::read_nifti(path);
  fs::remove(path);
  const bool ok = volume.data.shape() == labels.shape() && volume.data[7] == 4.0f &&
                  volume.geometry.spacing[2] == 2.0;
  std::printf("revox consumer (nifti): %s\n", ok ? "label map round trip ok" : "FAILED");
  return ok ? 0 : 1;
}
