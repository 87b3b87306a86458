// src/support/utils.h -- written for webllm_build.
//
// Stands in for the header of the same name that the apache-tvm wheel's
// runtime sources include but do not ship.  Only the small string/hash
// helpers the runtime uses are provided (StartsWith in the RPC endpoint,
// IsNumber in the thread pool, HashCombine in the CUDA graph cache, plus
// Split/EndsWith).  The original's popen/subprocess helpers are left out on
// purpose: nothing in the runtime needs them and they make no sense on wasm.
#ifndef TVM_SUPPORT_UTILS_H_
#define TVM_SUPPORT_UTILS_H_

#include <tvm/ffi/string.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace tvm {
namespace support {

/*! \return true if str is non-empty and made only of ASCII digits. */
inline bool IsNumber(const std::string& str) {
  return !str.empty() && std::all_of(str.begin(), str.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0;
  });
}

/*! \brief Split str at every delim; a trailing delimiter adds no empty item. */
inline std::vector<std::string> Split(const std::string& str, char delim) {
  std::vector<std::string> parts;
  std::istringstream in(str);
  std::string item;
  while (std::getline(in, item, delim)) parts.push_back(item);
  return parts;
}

namespace utils_detail {
inline bool HasPrefix(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}
}  // namespace utils_detail

/*! \return whether str begins with prefix (an empty prefix always matches). */
inline bool StartsWith(const ffi::String& str, const char* prefix) {
  return utils_detail::HasPrefix(std::string_view(str.data(), str.size()), prefix);
}
inline bool StartsWith(const std::string& str, const char* prefix) {
  return utils_detail::HasPrefix(str, prefix);
}

/*! \return whether value ends with end. */
inline bool EndsWith(const std::string& value, const std::string& end) {
  return value.size() >= end.size() &&
         value.compare(value.size() - end.size(), end.size(), end) == 0;
}

/*!
 * \brief Mix value into a running 64-bit hash.
 * \note Deliberately independent of std::hash so results are identical on
 *  every platform (hash values may be persisted or compared across hosts).
 */
template <typename T, std::enable_if_t<std::is_convertible<T, uint64_t>::value, bool> = true>
inline uint64_t HashCombine(uint64_t key, const T& value) {
  return key ^ (static_cast<uint64_t>(value) + 0x9e3779b9 + (key << 6) + (key >> 2));
}

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_UTILS_H_
