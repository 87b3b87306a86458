// tvm/support/serializer.h -- written for webllm_build.
//
// Stands in for the header of the same name that the apache-tvm wheel's
// runtime sources include but do not ship.  It provides the Serializer<T>
// specialisations used by the wasm runtime.
//
// The byte layout here is a compatibility contract: Relax VM executables,
// parameter blobs and WebGPU module blobs are written in Python by the
// wheel's native libtvm and read back by the wasm runtime built from these
// headers.  The format is the classic dmlc one:
//   * arithmetic values: raw little-endian bytes of sizeof(T)
//     (beware: size_t/long are 4 bytes on wasm32, so the runtime sources
//     always spell out uint64_t/int64_t for anything that crosses hosts);
//   * enums: their underlying integer type;
//   * std::string / ffi::String: uint64 byte count, then the bytes;
//   * std::vector<T> / ffi::Array<T>: uint64 element count, then each
//     element encoded as a T (arithmetic elements are one raw block);
//   * std::pair<A, B>: A then B;
//   * std::unordered_map<K, V> / ffi::Map<K, V>: uint64 entry count, then
//     key, value, key, value ... (iteration order, not sorted);
//   * DLDataType: u8 code, u8 bits, u16 lanes (4 bytes, same as the struct);
//   * DLDevice: i32 device_type, i32 device_id (8 bytes, same as the struct).
#ifndef TVM_SUPPORT_SERIALIZER_H_
#define TVM_SUPPORT_SERIALIZER_H_

#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/endian.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tvm {
namespace support {

// ---- bool, char, integers, floating point ----
template <typename T>
struct Serializer<T, std::enable_if_t<std::is_arithmetic_v<T>>> {
  static constexpr bool enabled = true;

  static void Write(Stream* strm, const T& value) {
    if constexpr (TVM_FFI_IO_NO_ENDIAN_SWAP) {
      strm->Write(static_cast<const void*>(&value), sizeof(T));
    } else {
      T tmp = value;
      ffi::ByteSwap(&tmp, sizeof(T), 1);
      strm->Write(static_cast<const void*>(&tmp), sizeof(T));
    }
  }

  static bool Read(Stream* strm, T* out) {
    if (strm->Read(static_cast<void*>(out), sizeof(T)) != sizeof(T)) return false;
    if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP) {
      ffi::ByteSwap(out, sizeof(T), 1);
    }
    return true;
  }
};

// ---- enums (plain and scoped): encoded as the underlying integer ----
template <typename T>
struct Serializer<T, std::enable_if_t<std::is_enum_v<T>>> {
  static constexpr bool enabled = true;
  using Under = std::underlying_type_t<T>;

  static void Write(Stream* strm, const T& value) {
    Serializer<Under>::Write(strm, static_cast<Under>(value));
  }

  static bool Read(Stream* strm, T* out) {
    Under raw{};
    if (!Serializer<Under>::Read(strm, &raw)) return false;
    *out = static_cast<T>(raw);
    return true;
  }
};

namespace serializer_detail {

// Length prefixes are always 64-bit so that blobs written on a 64-bit host
// load on wasm32 and vice versa.
inline void WriteCount(Stream* strm, size_t n) {
  Serializer<uint64_t>::Write(strm, static_cast<uint64_t>(n));
}

inline bool ReadCount(Stream* strm, uint64_t* n) { return Serializer<uint64_t>::Read(strm, n); }

// Shared body of the std::string / ffi::String writers.
inline void WriteBytes(Stream* strm, const char* data, size_t size) {
  WriteCount(strm, size);
  if (size != 0) strm->Write(static_cast<const void*>(data), size);
}

inline bool ReadBytes(Stream* strm, std::string* out) {
  uint64_t n;
  if (!ReadCount(strm, &n)) return false;
  out->resize(static_cast<size_t>(n));
  if (n == 0) return true;
  size_t nbytes = static_cast<size_t>(n);
  return strm->Read(static_cast<void*>(&(*out)[0]), nbytes) == nbytes;
}

}  // namespace serializer_detail

// ---- std::string ----
template <>
struct Serializer<std::string> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const std::string& s) {
    serializer_detail::WriteBytes(strm, s.data(), s.size());
  }
  static bool Read(Stream* strm, std::string* out) { return serializer_detail::ReadBytes(strm, out); }
};

// ---- ffi::String (same bytes as std::string) ----
template <>
struct Serializer<ffi::String> {
  static constexpr bool enabled = true;
  static void Write(Stream* strm, const ffi::String& s) {
    serializer_detail::WriteBytes(strm, s.data(), s.size());
  }
  static bool Read(Stream* strm, ffi::String* out) {
    std::string tmp;
    if (!serializer_detail::ReadBytes(strm, &tmp)) return false;
    *out = ffi::String(std::move(tmp));
    return true;
  }
};

// ---- std::vector<T> ----
template <typename T, typename Alloc>
struct Serializer<std::vector<T, Alloc>> {
  static constexpr bool enabled = true;

  static void Write(Stream* strm, const std::vector<T, Alloc>& vec) {
    serializer_detail::WriteCount(strm, vec.size());
    // WriteArray emits exactly the per-element encoding (one raw block for
    // arithmetic T on little-endian hosts).
    strm->WriteArray(vec.data(), vec.size());
  }

  static bool Read(Stream* strm, std::vector<T, Alloc>* vec) {
    uint64_t n;
    if (!serializer_detail::ReadCount(strm, &n)) return false;
    vec->resize(static_cast<size_t>(n));
    return strm->ReadArray(vec->data(), vec->size());
  }
};

// std::vector<bool> has no contiguous storage; encode it one byte per
// element like any other vector of bool would be.
template <typename Alloc>
struct Serializer<std::vector<bool, Alloc>> {
  static constexpr bool enabled = true;

  static void Write(Stream* strm, const std::vector<bool, Alloc>& vec) {
    serializer_detail::WriteCount(strm, vec.size());
    for (bool b : vec) Serializer<bool>::Write(strm, b);
  }

  static bool Read(Stream* strm, std::vector<bool, Alloc>* vec) {
    uint64_t n;
    if (!serializer_detail::ReadCount(strm, &n)) return false;
    vec->assign(static_cast<size_t>(n), false);
    for (size_t i = 0; i < vec->size(); ++i) {
      bool b;
      if (!Serializer<bool>::Read(strm, &b)) return false;
      (*vec)[i] = b;
    }
    return true;
  }
};

// ---- std::pair<A, B> ----
template <typename A, typename B>
struct Serializer<std::pair<A, B>> {
  static constexpr bool enabled = true;

  static void Write(Stream* strm, const std::pair<A, B>& p) {
    Serializer<A>::Write(strm, p.first);
    Serializer<B>::Write(strm, p.second);
  }

  static bool Read(Stream* strm, std::pair<A, B>* p) {
    return Serializer<A>::Read(strm, &p->first) && Serializer<B>::Read(strm, &p->second);
  }
};

// ---- std::unordered_map<K, V>: count, then key/value pairs ----
template <typename K, typename V, typename H, typename E, typename Alloc>
struct Serializer<std::unordered_map<K, V, H, E, Alloc>> {
  static constexpr bool enabled = true;
  using MapT = std::unordered_map<K, V, H, E, Alloc>;

  static void Write(Stream* strm, const MapT& m) {
    serializer_detail::WriteCount(strm, m.size());
    for (const auto& kv : m) {
      Serializer<K>::Write(strm, kv.first);
      Serializer<V>::Write(strm, kv.second);
    }
  }

  static bool Read(Stream* strm, MapT* m) {
    uint64_t n;
    if (!serializer_detail::ReadCount(strm, &n)) return false;
    m->clear();
    m->reserve(static_cast<size_t>(n));
    for (uint64_t i = 0; i < n; ++i) {
      K key{};
      V value{};
      if (!Serializer<K>::Read(strm, &key)) return false;
      if (!Serializer<V>::Read(strm, &value)) return false;
      // A well-formed blob has no duplicate keys; if one appears the first
      // occurrence is kept (insert semantics).
      m->emplace(std::move(key), std::move(value));
    }
    return true;
  }
};

// ---- ffi::Array<T>: same bytes as std::vector<T> ----
template <typename T>
struct Serializer<ffi::Array<T>> {
  static constexpr bool enabled = true;

  static void Write(Stream* strm, const ffi::Array<T>& arr) {
    serializer_detail::WriteCount(strm, arr.size());
    for (const auto& elem : arr) {
      T value = elem;
      Serializer<T>::Write(strm, value);
    }
  }

  static bool Read(Stream* strm, ffi::Array<T>* arr) {
    uint64_t n;
    if (!serializer_detail::ReadCount(strm, &n)) return false;
    std::vector<T> items;
    items.reserve(static_cast<size_t>(n));
    for (uint64_t i = 0; i < n; ++i) {
      T value{};
      if (!Serializer<T>::Read(strm, &value)) return false;
      items.push_back(std::move(value));
    }
    *arr = ffi::Array<T>(items);
    return true;
  }
};

// ---- ffi::Map<K, V>: same bytes as std::unordered_map<K, V> ----
template <typename K, typename V>
struct Serializer<ffi::Map<K, V>> {
  static constexpr bool enabled = true;

  static void Write(Stream* strm, const ffi::Map<K, V>& m) {
    serializer_detail::WriteCount(strm, m.size());
    for (const auto& kv : m) {
      Serializer<K>::Write(strm, kv.first);
      Serializer<V>::Write(strm, kv.second);
    }
  }

  static bool Read(Stream* strm, ffi::Map<K, V>* m) {
    uint64_t n;
    if (!serializer_detail::ReadCount(strm, &n)) return false;
    ffi::Map<K, V> result;
    for (uint64_t i = 0; i < n; ++i) {
      K key{};
      V value{};
      if (!Serializer<K>::Read(strm, &key)) return false;
      if (!Serializer<V>::Read(strm, &value)) return false;
      result.Set(std::move(key), std::move(value));
    }
    *m = std::move(result);
    return true;
  }
};

// ---- DLDataType: field by field (no padding, 4 bytes) ----
template <>
struct Serializer<DLDataType> {
  static constexpr bool enabled = true;

  static void Write(Stream* strm, const DLDataType& t) {
    Serializer<uint8_t>::Write(strm, t.code);
    Serializer<uint8_t>::Write(strm, t.bits);
    Serializer<uint16_t>::Write(strm, t.lanes);
  }

  static bool Read(Stream* strm, DLDataType* t) {
    return Serializer<uint8_t>::Read(strm, &t->code) && Serializer<uint8_t>::Read(strm, &t->bits) &&
           Serializer<uint16_t>::Read(strm, &t->lanes);
  }
};

// ---- DLDevice: device_type as int32 (the C enum's width is not part of
// the contract), then device_id ----
template <>
struct Serializer<DLDevice> {
  static constexpr bool enabled = true;

  static void Write(Stream* strm, const DLDevice& d) {
    Serializer<int32_t>::Write(strm, static_cast<int32_t>(d.device_type));
    Serializer<int32_t>::Write(strm, static_cast<int32_t>(d.device_id));
  }

  static bool Read(Stream* strm, DLDevice* d) {
    int32_t type = 0, id = 0;
    if (!Serializer<int32_t>::Read(strm, &type)) return false;
    if (!Serializer<int32_t>::Read(strm, &id)) return false;
    d->device_type = static_cast<DLDeviceType>(type);
    d->device_id = id;
    return true;
  }
};

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_SERIALIZER_H_
