// Test-only: lets the CUDA C kernels of kernels/cuda/*.cu compile as C++ and run on the CPU.
//
// Used by kernels/tests/cuda_host.rs (never by the backend, which compiles the kernels with
// NVRTC). A grid runs block after block; each block's threads are real threads, so
// __syncthreads() is a real barrier and a data race between them is a real race (the test
// also builds under ThreadSanitizer and AddressSanitizer).
//
// What CUDA C needs and C++ lacks:
// - __global__, __device__, __host__, __forceinline__, __restrict__: qualifiers, dropped
//   (or mapped to the compiler's own restrict);
// - threadIdx, blockIdx, blockDim, gridDim: thread-local, set by cohost_shim::launch;
// - __syncthreads(): a barrier across the block's threads that aborts, naming the block, when
//   some threads wait in __syncthreads() while others have left the kernel (undefined in
//   CUDA), or when the block makes no progress for 30 s;
// - `static __shared__` arrays: `__shared__` becomes `static`, one copy all threads of the
//   running block share (correct because blocks run one at a time);
// - `extern __shared__ T name[];` (dynamic shared memory) cannot be said in C++: the test
//   rewrites that one line to COHOST_DYNAMIC_SHARED(T, name), a pointer to a buffer of exactly
//   the launch's shared-memory bytes (so reading past it is a sanitizer error);
// - expf, fmaxf, sqrtf, fmaf: the C library's <math.h> functions (IEEE, like the device's
//   non-fast-math ones to within the test's tolerance).
#pragma once

#include <math.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

/// CUDA's uint3 / dim3, as far as the kernels use it.
struct cohost_dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

inline thread_local cohost_dim3 threadIdx;
inline thread_local cohost_dim3 blockIdx;
inline thread_local cohost_dim3 blockDim;
inline thread_local cohost_dim3 gridDim;

namespace cohost_shim {

/// Largest dynamic shared memory a launch may ask for without opting in (as on the device).
constexpr std::size_t MAX_SHARED_BYTES = 48 << 10;

/// Largest block the device runs.
constexpr unsigned MAX_THREADS = 1024;

[[noreturn]] inline void fail(const char* what, unsigned block) {
    std::fprintf(stderr, "host shim: %s (block %u)\n", what, block);
    std::fflush(stderr);
    std::abort();
}

/// A reusable barrier for the threads of one block. Every arrival says why it waits: in
/// __syncthreads() or at the end of the block; a generation mixing the two is a divergent
/// __syncthreads().
class BlockBarrier {
  public:
    enum Kind { SYNC = 1, END = 2 };

    explicit BlockBarrier(unsigned threads) : threads_(threads) {}

    void arrive(Kind kind) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (waiting_ == 0) {
            kind_ = kind;
        } else if (kind_ != kind) {
            fail("__syncthreads() not reached by every thread of the block", blockIdx.x);
        }
        const unsigned long long gen = generation_;
        if (++waiting_ == threads_) {
            waiting_ = 0;
            ++generation_;
            cv_.notify_all();
            return;
        }
        const bool woke = cv_.wait_for(lock, std::chrono::seconds(30),
                                       [&] { return generation_ != gen; });
        if (!woke) {
            fail("block made no progress for 30 s (deadlocked barrier)", blockIdx.x);
        }
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    const unsigned threads_;
    unsigned waiting_ = 0;
    unsigned long long generation_ = 0;
    Kind kind_ = SYNC;
};

inline thread_local BlockBarrier* barrier = nullptr;
inline thread_local unsigned char* dynamic_shared = nullptr;

/// Runs `kernel()` (a call of one kernel with its arguments) on a `grid x block` launch with
/// `shared_bytes` of dynamic shared memory; refuses what the device would refuse.
template <class Kernel>
void launch(unsigned grid, unsigned block, std::size_t shared_bytes, Kernel kernel) {
    if (grid == 0 || block == 0 || block > MAX_THREADS) {
        fail("invalid launch: grid and block must be >= 1 and block <= 1024", 0);
    }
    if (shared_bytes > MAX_SHARED_BYTES) {
        fail("invalid launch: more than 48 KiB of dynamic shared memory", 0);
    }
    // Exactly the bytes asked for (none: no buffer), so an overrun is caught.
    std::unique_ptr<unsigned char[]> shared(shared_bytes ? new unsigned char[shared_bytes]
                                                         : nullptr);
    BlockBarrier bar(block);
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned t = 0; t < block; ++t) {
        threads.emplace_back([&, t] {
            threadIdx = {t, 0, 0};
            blockDim = {block, 1, 1};
            gridDim = {grid, 1, 1};
            barrier = &bar;
            dynamic_shared = shared.get();
            for (unsigned b = 0; b < grid; ++b) {
                blockIdx = {b, 0, 0};
                kernel();
                // Every thread leaves block b before any starts block b + 1 (shared memory
                // is reused).
                bar.arrive(BlockBarrier::END);
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
}

}  // namespace cohost_shim

inline void __syncthreads() {
    cohost_shim::barrier->arrive(cohost_shim::BlockBarrier::SYNC);
}

#define COHOST_DYNAMIC_SHARED(T, name) T* const name = reinterpret_cast<T*>(cohost_shim::dynamic_shared)
