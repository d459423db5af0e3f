// Must NOT compile: UNet<T, F> with a custom F needs a factory; the one-argument
// constructor builds only the default ConfiguredBlock<T>. tests/CMakeLists.txt compiles this
// file and checks the message.
#include "revox/layers/conv_block.hpp"
#include "revox/models/unet.hpp"

int main() {
  revox::UNet<float, revox::ConvBlock<float>> net(revox::unet_preset("tiny"));
  return static_cast<int>(net.levels());
}
