// tvm/support/io.h -- written for webllm_build.
//
// Stands in for the header of the same name that the apache-tvm wheel's
// runtime sources include but do not ship.  It declares the abstract binary
// stream the runtime serialises through (Relax VM executables, parameter
// blobs, tensors, RPC packets) and the Serializer<T> customisation point.
//
// Wire format (must match what the wheel's native libtvm writes): every
// typed value goes through Serializer<T>; the concrete encodings live in
// tvm/support/serializer.h.
#ifndef TVM_SUPPORT_IO_H_
#define TVM_SUPPORT_IO_H_

#include <tvm/ffi/endian.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace tvm {
namespace support {

// Customisation point: Serializer<T> describes how a T is laid out on a
// Stream.  The primary template is disabled; supported types provide a
// specialisation with
//   static constexpr bool enabled = true;
//   static void Write(Stream*, const T&);
//   static bool Read(Stream*, T*);
// The second parameter exists so specialisations can be selected with
// enable_if (arithmetic types, enums).  Runtime code elsewhere writes full
// specialisations such as `template <> struct Serializer<VMFuncInfo>`.
template <typename T, typename Enable = void>
struct Serializer {
  static constexpr bool enabled = false;
};

class Stream {
 public:
  virtual ~Stream() = default;

  // Raw byte I/O implemented by concrete streams.  Read returns the number
  // of bytes actually produced (short on end of data).
  virtual size_t Read(void* ptr, size_t size) = 0;
  virtual size_t Write(const void* ptr, size_t size) = 0;

  // Typed I/O.  These overloads share the names of the raw virtuals, so a
  // subclass that overrides the raw ones must say `using Stream::Read;` and
  // `using Stream::Write;` to keep these visible (the runtime sources do).
  template <typename T>
  void Write(const T& value) {
    static_assert(Serializer<T>::enabled, "type has no tvm::support::Serializer");
    Serializer<T>::Write(this, value);
  }

  template <typename T>
  bool Read(T* out) {
    static_assert(Serializer<T>::enabled, "type has no tvm::support::Serializer");
    return Serializer<T>::Read(this, out);
  }

  // Arrays without a length prefix: the caller already knows the count.
  // Elements are encoded one after another exactly as Write<T> would encode
  // them, so for arithmetic types on a little-endian host a single raw
  // copy produces the same bytes and is used as a fast path.
  template <typename T>
  void WriteArray(const T* data, size_t count) {
    if constexpr (kRawCopyOK<T>) {
      if (count != 0) this->Write(static_cast<const void*>(data), sizeof(T) * count);
    } else {
      for (size_t i = 0; i < count; ++i) this->Write<T>(data[i]);
    }
  }

  template <typename T>
  bool ReadArray(T* data, size_t count) {
    if constexpr (kRawCopyOK<T>) {
      if (count == 0) return true;
      size_t nbytes = sizeof(T) * count;
      return this->Read(static_cast<void*>(data), nbytes) == nbytes;
    } else {
      for (size_t i = 0; i < count; ++i) {
        if (!this->Read<T>(data + i)) return false;
      }
      return true;
    }
  }

 private:
  // The wire format is little-endian (TVM_FFI_IO_USE_LITTLE_ENDIAN).  Bulk
  // copies of arithmetic arrays are byte-identical to the element-wise
  // encoding only when the host needs no swapping (true for wasm, x86, arm);
  // otherwise fall back to per-element writes, which swap.
  template <typename T>
  static constexpr bool kRawCopyOK = std::is_arithmetic_v<T> && TVM_FFI_IO_NO_ENDIAN_SWAP;
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_IO_H_
