// The run directory's lock: one `train` process (rank 0 of a data-parallel run) at a time per
// RUN_DIR. The lock is RUN_DIR/train.lock, held with flock(2) for the whole run; the file
// holds the holder's pid (and host name) so that a refused second process can name it.
//
// Why flock plus a pid rather than O_EXCL plus a pid check: the kernel drops a flock when its
// holder dies, however it dies (kill -9 included), so a stale lock can never block a run and
// there is no race between "is that pid alive?" and taking the lock over (pids are reused, and
// a pid says nothing about another host sharing the directory). The pid in the file is only
// for messages: when the lock is free but the file still names a pid, the previous holder
// ended without releasing it (killed, or crashed), and the run says it takes the stale lock
// over. A run that ends normally empties the file before it lets go. The file itself is never
// deleted while the run is going: deleting a flock'ed file lets a second process lock a new
// file of the same name while a third still holds the old one.
//
// flock works on local file systems and, emulated by fcntl locks, on NFS; a file system
// without locking support makes the run refuse to start with the error it reports.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "revox/core/error.hpp"

namespace revox::brats {

inline constexpr const char* kRunLockName = "train.lock";

class RunLock {
 public:
  RunLock() = default;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock() { release(); }

  // Takes the lock of run directory `dir` (which must exist). Throws revox::Error naming the
  // lock file and the holder's pid when another process holds it; `say` gets the note when a
  // stale lock is taken over. `created` tells whether this call created the file (see
  // remove_if_created).
  void acquire(const std::filesystem::path& dir, const std::function<void(const std::string&)>& say) {
    path_ = dir / kRunLockName;
    created_ = !std::filesystem::exists(path_);
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    REVOX_CHECK(fd_ >= 0, "cannot open the run directory's lock file '", path_.string(), "': ",
                std::strerror(errno));
    const std::string holder = read_holder();
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      ::close(fd_);
      fd_ = -1;
      created_ = false;
      if (error == EWOULDBLOCK) {
        throw Error("run directory '" + dir.string() + "' is in use: its lock file '" +
                    path_.string() + "' is held by " +
                    (holder.empty() ? std::string("another process") : holder) +
                    "; wait for that run to end or stop it (two trainings must not write the "
                    "same run directory)");
      }
      throw Error("cannot lock '" + path_.string() + "': " + std::strerror(error));
    }
    if (!holder.empty()) {
      say("train: taking over the stale lock '" + path_.string() + "' of " + holder +
          ", which ended without releasing it (killed or crashed)" +
          (holder_alive(holder) ? std::string(" (that pid is in use again, by another process)")
                                : std::string(" (no longer running)")));
    }
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    const std::string text =
        "pid " + std::to_string(static_cast<long>(::getpid())) + " on " + host + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) !=
                                        static_cast<ssize_t>(text.size())) {
      const int error = errno;
      release();
      throw Error("cannot write the lock file '" + path_.string() + "': " + std::strerror(error));
    }
  }

  // Normal end: empties the file (so the next run sees no stale holder) and unlocks.
  void release() {
    if (fd_ < 0) return;
    if (::ftruncate(fd_, 0) != 0) {
      // An unwritable lock file only costs a spurious "stale lock" note next time.
    }
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
    fd_ = -1;
  }

  // For a run that fails to start: releases the lock and deletes the file if this run
  // created it, so that nothing is left in the run directory.
  void remove_if_created() {
    if (fd_ < 0) return;
    if (created_) ::unlink(path_.c_str());
    release();
  }

  bool held() const { return fd_ >= 0; }

 private:
  std::string read_holder() const {
    char buffer[512] = {0};
    const ssize_t n = ::pread(fd_, buffer, sizeof buffer - 1, 0);
    if (n <= 0) return std::string();
    std::string text(buffer, static_cast<std::size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
  }

  static bool holder_alive(const std::string& holder) {
    long pid = 0;
    std::istringstream in(holder);
    std::string word;
    if (!(in >> word >> pid) || word != "pid" || pid <= 0) return false;
    return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
  }

  std::filesystem::path path_;
  int fd_ = -1;
  bool created_ = false;
};

}  // namespace revox::brats
