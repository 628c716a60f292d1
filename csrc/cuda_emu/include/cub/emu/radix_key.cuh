// The order CUB's radix sorts give keys, as unsigned integers compared
// bitwise (CUB's documented "Type Specific Bitwise Transformations"):
//   - unsigned integers: the bits as they are;
//   - signed integers: the sign bit flipped;
//   - floating point: positive values get the sign bit flipped, negative
//     values all bits flipped, so that the unsigned order is the numeric
//     order (NaNs land by their bits: positive NaNs above +inf, negative
//     NaNs below -inf);
//   - -0.0 and +0.0 are one key (CUB maps the transformed -0.0 onto +0.0
//     before taking digits, so they tie and a stable sort keeps their input
//     order, as CUB documents).
// A sort restricted to bits [begin_bit, end_bit) compares only those bits of
// the transformed key; a descending sort is an ascending sort of the
// complemented (transformed, then restricted) key.
//
// One corner where CUB is not consistent with itself: in a DESCENDING sort
// on a bit range that leaves out the top bit, its onesweep path (large
// inputs) takes the zeros' bits from -0.0's pattern (0x7f..f), its other
// paths (and this emulation) from +0.0's (0x80..0), so the zeros land at
// different places. On the full bit range (all the project uses) the two
// agree: the zeros sit between the negative and the positive keys.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace cub {
namespace emu {

template <size_t Bytes>
struct UnsignedOfSize;
template <>
struct UnsignedOfSize<1> {
  using type = uint8_t;
};
template <>
struct UnsignedOfSize<2> {
  using type = uint16_t;
};
template <>
struct UnsignedOfSize<4> {
  using type = uint32_t;
};
template <>
struct UnsignedOfSize<8> {
  using type = uint64_t;
};

template <typename KeyT>
struct RadixKey {
  static_assert(std::is_arithmetic<KeyT>::value && !std::is_same<KeyT, bool>::value &&
                    !std::is_same<KeyT, long double>::value,
                "the emulated CUB sorts integer, float and double keys");
  using Bits = typename UnsignedOfSize<sizeof(KeyT)>::type;
  static constexpr int kBits = static_cast<int>(8 * sizeof(KeyT));
  static constexpr Bits kHighBit = static_cast<Bits>(Bits(1) << (kBits - 1));

  // The key's place in CUB's order, as an unsigned integer.
  static Bits ordered(KeyT key) {
    Bits bits;
    std::memcpy(&bits, &key, sizeof(KeyT));
    if constexpr (std::is_floating_point<KeyT>::value) {
      const Bits flip = (bits & kHighBit) ? static_cast<Bits>(~Bits(0)) : kHighBit;
      bits = static_cast<Bits>(bits ^ flip);
      // -0.0 transformed is 0x7f..f, +0.0 transformed is 0x80..0: one key
      if (bits == static_cast<Bits>(~kHighBit)) bits = kHighBit;
    } else if constexpr (std::is_signed<KeyT>::value) {
      bits = static_cast<Bits>(bits ^ kHighBit);
    }
    return bits;
  }
};

// Bits [begin_bit, end_bit) of an ordered key, as the low bits of a uint64.
inline uint64_t bit_field(uint64_t ordered_bits, int begin_bit, int end_bit) {
  const int width = end_bit - begin_bit;
  if (width <= 0) return 0;
  const uint64_t mask = width >= 64 ? ~uint64_t(0) : ((uint64_t(1) << width) - 1);
  return (ordered_bits >> begin_bit) & mask;
}

}  // namespace emu
}  // namespace cub
