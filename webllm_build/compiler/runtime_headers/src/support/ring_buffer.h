// src/support/ring_buffer.h -- written for webllm_build.
//
// Stands in for the header of the same name that the apache-tvm wheel's
// runtime sources include but do not ship.  A growable circular byte buffer
// used by the RPC endpoint to queue incoming and outgoing bytes, in both
// blocking and event-driven (the wasm RPC server) modes.
//
// Interface used by the runtime:
//   bytes_available(), capacity(), Reserve(n),
//   Read(dst, n)   -- n must be <= bytes_available()
//   Write(src, n)  -- always takes all n bytes, growing as needed
//   ReadWithCallback(fsend, max)  -- hand queued bytes to a non-blocking
//                                    size_t fsend(const void*, size_t)
//   WriteWithCallback(frecv, max) -- fill from a non-blocking
//                                    size_t frecv(void*, size_t)
#ifndef TVM_SUPPORT_RING_BUFFER_H_
#define TVM_SUPPORT_RING_BUFFER_H_

#include <tvm/ffi/error.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace tvm {
namespace support {

class RingBuffer {
 public:
  /*! \brief Initial (and minimum retained) capacity in bytes. */
  static const int kInitCapacity = 4 << 10;

  RingBuffer() : ring_(kInitCapacity) {}

  size_t bytes_available() const { return size_; }
  size_t capacity() const { return ring_.size(); }

  /*!
   * \brief Make the capacity at least n bytes.  Also gives memory back when
   *  the buffer has grown far beyond what the current request needs (large
   *  one-off transfers would otherwise pin memory; this matters on wasm
   *  where the heap never shrinks).  Contents are preserved either way.
   */
  void Reserve(size_t n) {
    if (ring_.size() < n) {
      // Grow with some headroom so a sequence of slightly larger requests
      // does not reallocate every time.
      Relayout(n + n / 5);
    } else if (ring_.size() > n * 8 && ring_.size() > static_cast<size_t>(kInitCapacity)) {
      size_t target = std::max({static_cast<size_t>(kInitCapacity), n, size_});
      Relayout(target);
    }
  }

  /*! \brief Pop exactly size bytes into data. */
  void Read(void* data, size_t size) {
    TVM_FFI_ICHECK_GE(size_, size) << "RingBuffer::Read past available data";
    char* out = static_cast<char*>(data);
    size_t first = std::min(size, ring_.size() - head_);
    std::memcpy(out, ring_.data() + head_, first);
    if (first < size) std::memcpy(out + first, ring_.data(), size - first);
    Consume(size);
  }

  /*!
   * \brief Offer up to max_nbytes queued bytes to fsend, which may accept
   *  fewer than offered.  \return bytes fsend accepted.
   */
  template <typename FSend>
  size_t ReadWithCallback(FSend fsend, size_t max_nbytes) {
    size_t want = std::min(max_nbytes, size_);
    TVM_FFI_ICHECK_NE(want, 0U) << "RingBuffer::ReadWithCallback on empty buffer";
    size_t first = std::min(want, ring_.size() - head_);
    size_t sent = fsend(static_cast<const void*>(ring_.data() + head_), first);
    // Only continue into the wrapped part if the first chunk went fully.
    if (sent == first && first < want) {
      sent += fsend(static_cast<const void*>(ring_.data()), want - first);
    }
    Consume(sent);
    return sent;
  }

  /*! \brief Append size bytes from data, growing the buffer if needed. */
  void Write(const void* data, size_t size) {
    Reserve(size_ + size);
    const char* in = static_cast<const char*>(data);
    size_t tail = (head_ + size_) % ring_.size();
    size_t first = std::min(size, ring_.size() - tail);
    std::memcpy(ring_.data() + tail, in, first);
    if (first < size) std::memcpy(ring_.data(), in + first, size - first);
    size_ += size;
  }

  /*!
   * \brief Let frecv deposit up to max_nbytes into the buffer; frecv may
   *  produce fewer (0 meaning nothing available / closed).
   *  \return bytes received.
   */
  template <typename FRecv>
  size_t WriteWithCallback(FRecv frecv, size_t max_nbytes) {
    Reserve(size_ + max_nbytes);
    size_t tail = (head_ + size_) % ring_.size();
    size_t first = std::min(max_nbytes, ring_.size() - tail);
    size_t got = frecv(static_cast<void*>(ring_.data() + tail), first);
    size_ += got;
    if (got == first && first < max_nbytes) {
      size_t more = frecv(static_cast<void*>(ring_.data()), max_nbytes - first);
      size_ += more;
      got += more;
    }
    return got;
  }

 private:
  void Consume(size_t n) {
    size_ -= n;
    // Reset to the start when empty: keeps future transfers contiguous.
    head_ = size_ == 0 ? 0 : (head_ + n) % ring_.size();
  }

  // Move the contents to a fresh buffer of new_capacity (>= size_), laid
  // out contiguously from offset 0.
  void Relayout(size_t new_capacity) {
    std::vector<char> next(new_capacity);
    size_t first = std::min(size_, ring_.size() - head_);
    if (first != 0) std::memcpy(next.data(), ring_.data() + head_, first);
    if (first < size_) std::memcpy(next.data() + first, ring_.data(), size_ - first);
    ring_.swap(next);
    head_ = 0;
  }

  std::vector<char> ring_;
  size_t head_{0};  // index of the oldest queued byte
  size_t size_{0};  // number of queued bytes
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_RING_BUFFER_H_
