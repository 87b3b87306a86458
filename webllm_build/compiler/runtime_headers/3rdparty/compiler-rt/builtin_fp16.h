// 3rdparty/compiler-rt/builtin_fp16.h -- written for webllm_build.
//
// Stands in for the header of the same name that the apache-tvm wheel's
// runtime sources include but do not ship.  It provides two generic IEEE-754
// binary conversions, spelled the way the runtime calls them:
//
//   __extendXfYf2__<SRC_T, SRC_REP_T, SRC_SIG_BITS,
//                   DST_T, DST_REP_T, DST_SIG_BITS>(a)   narrow -> wide
//   __truncXfYf2__ <SRC_T, SRC_REP_T, SRC_SIG_BITS,
//                   DST_T, DST_REP_T, DST_SIG_BITS>(a)   wide -> narrow
//
// *_T is the value type (float/double, or uint16_t carrying raw half bits),
// *_REP_T the unsigned integer of the same width, *_SIG_BITS the number of
// stored significand bits (10 for half, 23 for float, 52 for double).
// Examples from the runtime:
//   half bits -> float: __extendXfYf2__<uint16_t, uint16_t, 10, float, uint32_t, 23>(h)
//   float -> half bits: __truncXfYf2__<float, uint32_t, 23, uint16_t, uint16_t, 10>(f)
//   double -> half bits: __truncXfYf2__<double, uint64_t, 52, uint16_t, uint16_t, 10>(d)
//
// Semantics (what compiler-rt's __extendhfsf2/__truncsfhf2 do):
//   * round to nearest, ties to even;
//   * too large -> signed infinity; too small -> signed zero; results in the
//     narrow format's subnormal range are produced as subnormals;
//   * infinities keep their sign; NaNs stay NaN, are made quiet, and keep as
//     much of the payload as fits (high payload bits are kept);
//   * narrow subnormals are renormalised exactly when widening.
// Everything is done on the integer representations, so the result does
// not depend on the host FPU rounding mode or flush-to-zero settings.
#ifndef TVM_3RDPARTY_COMPILER_RT_BUILTIN_FP16_H_
#define TVM_3RDPARTY_COMPILER_RT_BUILTIN_FP16_H_

#include <cstdint>
#include <cstring>

namespace tvm_builtin_fp16_detail {

// Bit-copy between a value type and its same-sized integer representation
// (memcpy instead of a union: well defined in C++ and folded by compilers).
template <typename To, typename From>
static inline To BitCopy(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "representation size mismatch");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

// Index of the most significant set bit of x (x != 0).
template <typename U>
static inline int HighestBit(U x) {
  int index = -1;
  while (x != 0) {
    x = static_cast<U>(x >> 1);
    ++index;
  }
  return index;
}

// Field layout of an IEEE binary format with SIG stored significand bits
// held in the unsigned integer type Rep.
template <typename Rep, int SIG>
struct Layout {
  static constexpr int kBits = static_cast<int>(sizeof(Rep) * 8);
  static constexpr int kExpBits = kBits - SIG - 1;
  static constexpr int kMaxExp = (1 << kExpBits) - 1;  // all-ones exponent: inf/NaN
  static constexpr int kBias = kMaxExp >> 1;
  static constexpr Rep kSigMask = static_cast<Rep>((Rep(1) << SIG) - 1);
  static constexpr Rep kQuietBit = static_cast<Rep>(Rep(1) << (SIG - 1));
  static constexpr Rep kSignBit = static_cast<Rep>(Rep(1) << (kBits - 1));
};

}  // namespace tvm_builtin_fp16_detail

template <typename SRC_T, typename SRC_REP_T, int SRC_SIG_BITS, typename DST_T,
          typename DST_REP_T, int DST_SIG_BITS>
static inline DST_T __truncXfYf2__(SRC_T a) {
  namespace d = tvm_builtin_fp16_detail;
  using S = d::Layout<SRC_REP_T, SRC_SIG_BITS>;
  using D = d::Layout<DST_REP_T, DST_SIG_BITS>;
  static_assert(SRC_SIG_BITS > DST_SIG_BITS && S::kExpBits >= D::kExpBits,
                "__truncXfYf2__ converts to a narrower format");
  constexpr int kDrop = SRC_SIG_BITS - DST_SIG_BITS;  // significand bits lost

  const SRC_REP_T rep = d::BitCopy<SRC_REP_T>(a);
  const bool negative = (rep & S::kSignBit) != 0;
  const int exp = static_cast<int>((rep >> SRC_SIG_BITS) & static_cast<SRC_REP_T>(S::kMaxExp));
  const SRC_REP_T frac = rep & S::kSigMask;

  DST_REP_T out;
  if (exp == S::kMaxExp) {
    if (frac == 0) {
      out = static_cast<DST_REP_T>(static_cast<DST_REP_T>(D::kMaxExp) << DST_SIG_BITS);
    } else {
      // NaN: keep the top payload bits and force the quiet bit so a
      // signalling NaN whose kept payload is zero cannot turn into infinity.
      DST_REP_T payload = static_cast<DST_REP_T>((frac >> kDrop) & D::kSigMask);
      out = static_cast<DST_REP_T>((static_cast<DST_REP_T>(D::kMaxExp) << DST_SIG_BITS) |
                                   D::kQuietBit | payload);
    }
  } else {
    // |a| = sig * 2^(e - SRC_SIG_BITS); source subnormals (exp == 0) have no
    // implicit bit and the exponent of the smallest normal.
    const SRC_REP_T sig =
        exp != 0 ? static_cast<SRC_REP_T>(frac | (SRC_REP_T(1) << SRC_SIG_BITS)) : frac;
    const int e = (exp != 0 ? exp : 1) - S::kBias;
    const int dst_exp = e + D::kBias;  // biased exponent if the result is normal

    if (sig == 0) {
      out = 0;
    } else if (dst_exp >= D::kMaxExp) {
      out = static_cast<DST_REP_T>(static_cast<DST_REP_T>(D::kMaxExp) << DST_SIG_BITS);
    } else {
      // Normal results drop kDrop bits; subnormal results drop more, one
      // per step below the smallest normal exponent.
      const int shift = dst_exp >= 1 ? kDrop : kDrop + (1 - dst_exp);
      if (shift > SRC_SIG_BITS + 1) {
        // sig < 2^(SRC_SIG_BITS+1) <= half of the smallest subnormal step:
        // rounds to zero.
        out = 0;
      } else {
        const SRC_REP_T kept = static_cast<SRC_REP_T>(sig >> shift);
        const SRC_REP_T rest = static_cast<SRC_REP_T>(sig & ((SRC_REP_T(1) << shift) - 1));
        const SRC_REP_T half = static_cast<SRC_REP_T>(SRC_REP_T(1) << (shift - 1));
        if (dst_exp >= 1) {
          // Exponent field plus the stored fraction; the implicit bit of
          // `kept` is replaced by the exponent.
          out = static_cast<DST_REP_T>((static_cast<DST_REP_T>(dst_exp) << DST_SIG_BITS) |
                                       (static_cast<DST_REP_T>(kept) & D::kSigMask));
        } else {
          out = static_cast<DST_REP_T>(kept);  // subnormal: exponent field 0
        }
        // Round to nearest, ties to even.  A carry out of the fraction
        // correctly bumps the exponent (subnormal -> smallest normal, or
        // largest finite -> infinity).
        if (rest > half || (rest == half && (out & 1) != 0)) {
          out = static_cast<DST_REP_T>(out + 1);
        }
      }
    }
  }
  if (negative) out = static_cast<DST_REP_T>(out | D::kSignBit);
  return d::BitCopy<DST_T>(out);
}

template <typename SRC_T, typename SRC_REP_T, int SRC_SIG_BITS, typename DST_T,
          typename DST_REP_T, int DST_SIG_BITS>
static inline DST_T __extendXfYf2__(SRC_T a) {
  namespace d = tvm_builtin_fp16_detail;
  using S = d::Layout<SRC_REP_T, SRC_SIG_BITS>;
  using D = d::Layout<DST_REP_T, DST_SIG_BITS>;
  static_assert(DST_SIG_BITS > SRC_SIG_BITS && D::kExpBits >= S::kExpBits,
                "__extendXfYf2__ converts to a wider format");
  constexpr int kGrow = DST_SIG_BITS - SRC_SIG_BITS;

  const SRC_REP_T rep = d::BitCopy<SRC_REP_T>(a);
  const bool negative = (rep & S::kSignBit) != 0;
  const int exp = static_cast<int>((rep >> SRC_SIG_BITS) & static_cast<SRC_REP_T>(S::kMaxExp));
  const DST_REP_T frac = static_cast<DST_REP_T>(rep & S::kSigMask);

  DST_REP_T out;
  if (exp == S::kMaxExp) {
    // Infinity (frac == 0) or NaN: payload moves up unchanged, so quiet /
    // signalling status and payload are preserved.
    out = static_cast<DST_REP_T>((static_cast<DST_REP_T>(D::kMaxExp) << DST_SIG_BITS) |
                                 static_cast<DST_REP_T>(frac << kGrow));
  } else if (exp != 0) {
    const int dst_exp = exp - S::kBias + D::kBias;
    out = static_cast<DST_REP_T>((static_cast<DST_REP_T>(dst_exp) << DST_SIG_BITS) |
                                 static_cast<DST_REP_T>(frac << kGrow));
  } else if (frac == 0) {
    out = 0;
  } else {
    // Source subnormal: value = frac * 2^(1 - bias - SRC_SIG_BITS).  Shift
    // the leading 1 into the implicit-bit position; the wider exponent
    // range always makes the result normal.
    const int top = d::HighestBit(frac);  // < SRC_SIG_BITS
    const int dst_exp = (top - SRC_SIG_BITS) + 1 - S::kBias + D::kBias;
    const DST_REP_T mant =
        static_cast<DST_REP_T>((frac << (DST_SIG_BITS - top)) & D::kSigMask);
    out = static_cast<DST_REP_T>((static_cast<DST_REP_T>(dst_exp) << DST_SIG_BITS) | mant);
  }
  if (negative) out = static_cast<DST_REP_T>(out | D::kSignBit);
  return d::BitCopy<DST_T>(out);
}

#endif  // TVM_3RDPARTY_COMPILER_RT_BUILTIN_FP16_H_
