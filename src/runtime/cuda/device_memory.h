// RAII device allocations. The runner owns every byte it allocates through these; nothing is
// freed by hand.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "runtime/cuda/cuda_check.h"

namespace gs::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)),
                                            bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }

  // Allocates `bytes` (freeing what was held). `what` names the buffer in the error message.
  Status Allocate(size_t bytes, const char* what) {
    Reset();
    if (bytes == 0) return Ok();
    cudaError_t err = cudaMalloc(&ptr_, bytes);
    if (err != cudaSuccess) {
      ptr_ = nullptr;
      return MakeError("cudaMalloc of ", bytes, " bytes for ", what, " failed: ",
                       cudaGetErrorString(err));
    }
    bytes_ = bytes;
    return Ok();
  }

  // Grows to at least `bytes` (contents are not kept).
  Status Reserve(size_t bytes, const char* what) {
    return bytes <= bytes_ ? Ok() : Allocate(bytes, what);
  }

  Status Upload(const void* host, size_t bytes, const char* what) {
    GS_RETURN_IF_ERROR(Allocate(bytes, what));
    if (bytes) GS_CUDA_RETURN_IF_ERROR(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice));
    return Ok();
  }

  void Reset() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }

  template <typename T = void>
  T* get() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Pinned host memory for the per-step metadata upload.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { if (ptr_) cudaFreeHost(ptr_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  Status Reserve(size_t bytes) {
    if (bytes <= bytes_) return Ok();
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    GS_CUDA_RETURN_IF_ERROR(cudaMallocHost(&ptr_, bytes));
    bytes_ = bytes;
    return Ok();
  }
  template <typename T = void>
  T* get() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace gs::cuda
