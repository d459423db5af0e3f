// revox-brats progress display. On a terminal (isatty(stdout)) one line is redrawn in place
// with '\r' after every step:
//   epoch 3/30 [#########.........]  12/20  loss 0.4123  dice 0.612  1.84 s/step  ETA 05:12
// Otherwise (a log file, a pipe, CI) nothing is printed per step; each epoch ends with one
// plain line (see Progress::end_epoch), so logs stay readable.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

namespace revox::brats {

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0)) seconds = 0;
  const long s = static_cast<long>(seconds + 0.5);
  char buffer[32];
  if (s >= 3600) {
    std::snprintf(buffer, sizeof buffer, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%02ld:%02ld", s / 60, s % 60);
  }
  return buffer;
}

class Progress {
 public:
  explicit Progress(bool terminal = isatty(fileno(stdout)) != 0) : terminal_(terminal) {}

  bool terminal() const { return terminal_; }

  // After step `step` (1-based) of `steps` in epoch `epoch` (1-based) of `epochs`.
  // eta_seconds: the estimated time left for the whole run.
  void step(int epoch, int epochs, int step, int steps, double loss, double dice,
            double step_seconds, double eta_seconds) {
    if (!terminal_) return;
    constexpr int kWidth = 20;
    const int filled = steps > 0 ? step * kWidth / steps : kWidth;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(kWidth - filled), '.');
    std::printf("\r\033[Kepoch %d/%d [%s] %d/%d  loss %.4f  dice %.3f  %.2f s/step  ETA %s",
                epoch, epochs, bar.c_str(), step, steps, loss, dice, step_seconds,
                format_duration(eta_seconds).c_str());
    std::fflush(stdout);
  }

  // One line per epoch, in both modes (the terminal's bar line is replaced).
  void end_epoch(const std::string& line) {
    if (terminal_) std::printf("\r\033[K");
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

 private:
  bool terminal_;
};

}  // namespace revox::brats
