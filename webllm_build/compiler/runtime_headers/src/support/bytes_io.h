// src/support/bytes_io.h -- written for webllm_build.
//
// Stands in for the header of the same name that the apache-tvm wheel's
// runtime sources include but do not ship.  Two in-memory streams:
//   BytesInStream  reads sequentially from a borrowed memory region
//                  (ffi::Bytes, std::string or pointer + size);
//   BytesOutStream appends to a caller-owned std::string.
// Used to load/save VM executables, parameter blobs and module blobs.
#ifndef TVM_SUPPORT_BYTES_IO_H_
#define TVM_SUPPORT_BYTES_IO_H_

#include <tvm/ffi/error.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <cstring>
#include <string>

namespace tvm {
namespace support {

class BytesInStream : public Stream {
 public:
  // Keep Stream's typed Read<T>/Write<T> visible next to the raw overrides.
  using Stream::Read;
  using Stream::Write;

  // The stream only borrows the memory: the source must outlive it.
  BytesInStream(const void* data, size_t size)
      : begin_(static_cast<const char*>(data)), size_(size) {}
  explicit BytesInStream(const ffi::Bytes& bytes) : begin_(bytes.data()), size_(bytes.size()) {}
  explicit BytesInStream(const std::string& str) : begin_(str.data()), size_(str.size()) {}

  size_t Read(void* ptr, size_t size) override {
    size_t remaining = size_ - pos_;
    size_t n = size < remaining ? size : remaining;
    if (n != 0) std::memcpy(ptr, begin_ + pos_, n);
    pos_ += n;
    return n;  // short count signals end of data to the typed readers
  }

  size_t Write(const void*, size_t) override {
    TVM_FFI_THROW(InternalError) << "BytesInStream is read-only";
    return 0;
  }

  /*! \return bytes consumed so far. */
  size_t Tell() const { return pos_; }
  /*! \return whether every byte has been consumed. */
  bool AtEnd() const { return pos_ == size_; }

 private:
  const char* begin_;
  size_t size_;
  size_t pos_{0};
};

class BytesOutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;

  // Appends to *buffer (existing contents are kept); buffer must outlive us.
  explicit BytesOutStream(std::string* buffer) : buffer_(buffer) {}

  size_t Write(const void* ptr, size_t size) override {
    if (size != 0) buffer_->append(static_cast<const char*>(ptr), size);
    return size;
  }

  size_t Read(void*, size_t) override {
    TVM_FFI_THROW(InternalError) << "BytesOutStream is write-only";
    return 0;
  }

 private:
  std::string* buffer_;
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_BYTES_IO_H_
