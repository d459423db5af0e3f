// revox/data/loader.hpp — bounded case caching and background sample loading.
//
// CaseCache keeps recently used cases open (for preprocessed data: mapped, see
// case_store.hpp) up to a byte limit and closes the least recently used beyond it. A case
// in use stays valid while someone holds it (shared_ptr), even after the cache dropped it;
// live_bytes() counts every case opened through the cache and not yet released, so
// peak_live_bytes() bounds the memory the cases ever held: the limit plus the cases held by
// the consumers at that moment (at most one per loader worker and one for the step).
//
// BackgroundLoader<T> produces items 0, 1, ..., count - 1 of a pure function make(i) on
// `workers` threads, at most `depth` items ahead of the consumer, and hands them out in
// order (next()). An item depends only on its index, so the sequence is the same for any
// number of workers; with 0 workers next() calls make(i) itself. wait_seconds() is the
// time next() kept its caller waiting (with 0 workers, the time making the items). An exception thrown by
// make(i) is rethrown by the next() that asks for item i. Each worker runs its OpenMP
// regions on one thread (the workers run beside the consumer's own threads).
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/data/case_store.hpp"

namespace revox::data {

class CaseCache {
 public:
  using Open = std::function<std::shared_ptr<const CaseArrays>(std::size_t)>;

  // `open(i)` opens case i; `limit_bytes` bounds the bytes of the cases the cache keeps.
  CaseCache(Open open, std::uint64_t limit_bytes)
      : open_(std::move(open)), limit_(limit_bytes), state_(std::make_shared<State>()) {}
  CaseCache(const CaseCache&) = delete;
  CaseCache& operator=(const CaseCache&) = delete;

  // Case i, opened if it is not cached. Thread-safe.
  std::shared_ptr<const CaseArrays> get(std::size_t i) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = where_.find(i);
    if (found != where_.end()) {
      ++hits_;
      lru_.splice(lru_.begin(), lru_, found->second);
      return found->second->second;
    }
    std::shared_ptr<const CaseArrays> opened = open_(i);
    REVOX_CHECK(opened != nullptr, "CaseCache: opening case ", i, " returned nothing");
    const std::uint64_t bytes = opened->bytes;
    // The handed-out pointer shares ownership with `opened` and reports its release, so
    // live_bytes counts a case until the cache and every user let go of it.
    std::shared_ptr<State> state = state_;
    {
      std::lock_guard<std::mutex> live_lock(state->mutex);
      state->live += bytes;
      state->peak = std::max(state->peak, state->live);
    }
    auto tracked = std::shared_ptr<const CaseArrays>(
        opened.get(), [opened, state, bytes](const CaseArrays*) mutable {
          opened.reset();
          std::lock_guard<std::mutex> live_lock(state->mutex);
          state->live -= bytes;
        });
    ++opens_;
    lru_.emplace_front(i, tracked);
    where_[i] = lru_.begin();
    cached_ += bytes;
    // Evict the least recently used until under the limit; the case just opened stays.
    while (cached_ > limit_ && lru_.size() > 1) {
      auto last = std::prev(lru_.end());
      cached_ -= last->second->bytes;
      where_.erase(last->first);
      lru_.erase(last);
      ++evictions_;
    }
    peak_cached_ = std::max(peak_cached_, cached_);
    return tracked;
  }

  // Drops every cached case (cases in use stay valid).
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    lru_.clear();
    where_.clear();
    cached_ = 0;
  }

  std::uint64_t limit_bytes() const { return limit_; }
  std::uint64_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }
  std::uint64_t peak_cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_cached_;
  }
  std::uint64_t live_bytes() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->live;
  }
  std::uint64_t peak_live_bytes() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->peak;
  }
  std::uint64_t opens() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return opens_;
  }
  std::uint64_t hits() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return hits_;
  }
  std::uint64_t evictions() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return evictions_;
  }

 private:
  struct State {
    std::mutex mutex;
    std::uint64_t live = 0, peak = 0;
  };
  using Entry = std::pair<std::size_t, std::shared_ptr<const CaseArrays>>;
  Open open_;
  std::uint64_t limit_;
  std::shared_ptr<State> state_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;
  std::unordered_map<std::size_t, std::list<Entry>::iterator> where_;
  std::uint64_t cached_ = 0, peak_cached_ = 0, opens_ = 0, hits_ = 0, evictions_ = 0;
};

template <class T>
class BackgroundLoader {
 public:
  // Items [0, count) of make; `workers` threads (0: made in next()), at most `depth` (>= 1)
  // items made ahead of the consumer.
  BackgroundLoader(std::size_t count, std::function<T(std::size_t)> make, int workers,
                   std::size_t depth)
      : count_(count), make_(std::move(make)), depth_(depth) {
    REVOX_CHECK(workers >= 0, "BackgroundLoader: workers must be >= 0, got ", workers);
    REVOX_CHECK(depth >= 1, "BackgroundLoader: depth must be >= 1, got ", depth);
    for (int w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
  }
  BackgroundLoader(const BackgroundLoader&) = delete;
  BackgroundLoader& operator=(const BackgroundLoader&) = delete;
  ~BackgroundLoader() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    for (auto& t : threads_) t.join();
  }

  std::size_t count() const { return count_; }

  // The next item in index order; rethrows its exception.
  T next() {
    REVOX_CHECK(consumed_ < count_, "BackgroundLoader: all ", count_, " items were taken");
    const std::size_t i = consumed_;
    const auto start = std::chrono::steady_clock::now();
    if (threads_.empty()) {
      ++consumed_;
      T item = make_(i);
      wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return item;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return ready_.count(i) != 0; });
    Slot slot = std::move(ready_.at(i));
    ready_.erase(i);
    ++consumed_;
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lock.unlock();
    changed_.notify_all();
    if (slot.error) std::rethrow_exception(slot.error);
    return std::move(*slot.value);
  }

  // Seconds next() spent waiting for items (with no workers: making them).
  double wait_seconds() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return wait_seconds_;
  }

 private:
  struct Slot {
    std::optional<T> value;
    std::exception_ptr error;
  };

  void work() {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    while (true) {
      std::size_t i = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stop_ || (claimed_ < count_ && claimed_ < consumed_ + depth_); });
        if (stop_) return;
        i = claimed_++;
      }
      Slot slot;
      try {
        slot.value.emplace(make_(i));
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.emplace(i, std::move(slot));
      }
      changed_.notify_all();
    }
  }

  const std::size_t count_;
  std::function<T(std::size_t)> make_;
  const std::size_t depth_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::size_t, Slot> ready_;
  std::size_t claimed_ = 0;
  std::size_t consumed_ = 0;  // written by the consumer under mutex_ (with workers)
  bool stop_ = false;
  double wait_seconds_ = 0.0;
  std::vector<std::thread> threads_;
};

}  // namespace revox::data
