// Host tests of the emulated CUB subset (csrc/cuda_emu/include/cub/): order,
// stability, the temporary-storage protocol, stream-ordered execution,
// argument checks. "Device" memory is host memory here, as in the emulator.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>
#include <cub/device/device_select.cuh>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "check.h"
#include "mock_runtime.h"

namespace {

// ------------------------------------------------------------ reference --

// CUB's documented key order, written independently of radix_key.cuh: the
// two zeros made one first, then positive floats above all negative ones
// (sign bit set), negative ones reversed (all bits flipped).
template <typename K>
uint64_t reference_order(K key) {
  if constexpr (std::is_floating_point<K>::value) {
    using U = std::conditional_t<sizeof(K) == 4, uint32_t, uint64_t>;
    if (key == K(0)) key = K(0);  // -0.0 == 0.0: both become +0.0
    U u;
    std::memcpy(&u, &key, sizeof(u));
    const U sign = U(1) << (8 * sizeof(K) - 1);
    return (u & sign) ? uint64_t(U(~u)) : uint64_t(u | sign);
  } else {
    using U = std::make_unsigned_t<K>;
    const U u = static_cast<U>(key);
    if (std::is_signed<K>::value) return uint64_t(U(u ^ (U(1) << (8 * sizeof(K) - 1))));
    return uint64_t(u);
  }
}

uint64_t bits_of(uint64_t ordered, int begin_bit, int end_bit) {
  const int width = end_bit - begin_bit;
  if (width == 0) return 0;
  return (ordered >> begin_bit) & (width == 64 ? ~uint64_t(0) : (uint64_t(1) << width) - 1);
}

template <typename K>
bool same_bits(K a, K b) {
  return std::memcmp(&a, &b, sizeof(K)) == 0;
}

template <typename K>
K from_bits(uint64_t bits) {
  K k;
  std::memcpy(&k, &bits, sizeof(K));
  return k;
}

// Keys that exercise the order: zeros of both signs, +-1, infinities, NaNs
// of both signs and several payloads, subnormals, extremes, many duplicates
// and random bit patterns.
template <typename K>
std::vector<K> awkward_keys(size_t n, std::mt19937_64& rng) {
  using Lim = std::numeric_limits<K>;
  const std::vector<K> specials = {K(-0.0), K(0.0),  K(-1.0), K(1.0), Lim::infinity(), -Lim::infinity(),
                                   Lim::quiet_NaN(), -Lim::quiet_NaN(), Lim::denorm_min(), -Lim::denorm_min(),
                                   Lim::max(),       Lim::lowest(),     Lim::min(),        K(0.5), K(-0.5)};
  std::vector<K> keys(n);
  for (size_t i = 0; i < n; ++i) {
    switch (rng() % 4) {
      case 0:
        keys[i] = specials[rng() % specials.size()];
        break;
      case 1:
        keys[i] = K(int(rng() % 7) - 3);  // duplicates
        break;
      case 2:
        keys[i] = from_bits<K>(sizeof(K) == 4 ? (rng() & 0xFFFFFFFFu) : rng());  // any pattern, NaN payloads too
        break;
      default:
        keys[i] = static_cast<K>(std::uniform_real_distribution<double>(-100.0, 100.0)(rng));
        break;
    }
  }
  return keys;
}

// The reference: positions stably sorted by the selected bits of CUB's order.
template <typename K>
std::vector<size_t> reference_sort(const std::vector<K>& keys, int begin_bit, int end_bit, bool descending) {
  std::vector<size_t> order(keys.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const uint64_t ka = bits_of(reference_order(keys[a]), begin_bit, end_bit);
    const uint64_t kb = bits_of(reference_order(keys[b]), begin_bit, end_bit);
    return descending ? ka > kb : ka < kb;
  });
  return order;
}

// A full two-phase call, the work run; returns whether the call succeeded.
template <typename K, typename V>
bool radix_sort(bool descending, const std::vector<K>& keys, const std::vector<V>& values, std::vector<K>& keys_out,
                std::vector<V>& values_out, int begin_bit, int end_bit) {
  const long long n = static_cast<long long>(keys.size());
  keys_out.assign(keys.size(), K(7));
  values_out.assign(values.size(), V(-1));
  size_t bytes = 0;
  cudaError_t e = descending ? cub::DeviceRadixSort::SortPairsDescending(
                                   nullptr, bytes, static_cast<const K*>(nullptr), static_cast<K*>(nullptr),
                                   static_cast<const V*>(nullptr), static_cast<V*>(nullptr), n, begin_bit, end_bit)
                             : cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const K*>(nullptr),
                                                               static_cast<K*>(nullptr), static_cast<const V*>(nullptr),
                                                               static_cast<V*>(nullptr), n, begin_bit, end_bit);
  if (!CHECK(e == cudaSuccess) || !CHECK(bytes >= 1)) return false;
  std::vector<unsigned char> temp(bytes);
  e = descending ? cub::DeviceRadixSort::SortPairsDescending(temp.data(), bytes, keys.data(), keys_out.data(),
                                                             values.data(), values_out.data(), n, begin_bit, end_bit)
                 : cub::DeviceRadixSort::SortPairs(temp.data(), bytes, keys.data(), keys_out.data(), values.data(),
                                                   values_out.data(), n, begin_bit, end_bit);
  if (!CHECK(e == cudaSuccess)) return false;
  mock::flush();
  return true;
}

template <typename K, typename V>
void check_radix_against_reference(const std::vector<K>& keys, int begin_bit, int end_bit, bool descending) {
  std::vector<V> values(keys.size());
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<V>(i);
  std::vector<K> keys_out;
  std::vector<V> values_out;
  if (!radix_sort(descending, keys, values, keys_out, values_out, begin_bit, end_bit)) return;
  const std::vector<size_t> expected = reference_sort(keys, begin_bit, end_bit, descending);
  size_t mismatches = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!same_bits(keys_out[i], keys[expected[i]]) || values_out[i] != static_cast<V>(expected[i])) ++mismatches;
  }
  if (!CHECK(mismatches == 0)) {
    std::fprintf(stderr, "  %zu of %zu items out of place (key bytes %zu, bits [%d, %d), %s)\n", mismatches,
                 keys.size(), sizeof(K), begin_bit, end_bit, descending ? "descending" : "ascending");
  }
}

// ------------------------------------------------------------ radix sort --

void test_radix_known_order() {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> keys = {1.0f, -0.0f, 0.0f, -1.0f, nan, inf, -inf, -nan, 0.0f, -0.0f};
  const std::vector<int> values = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<float> keys_out;
  std::vector<int> values_out;
  if (!radix_sort(true, keys, values, keys_out, values_out, 0, 32)) return;
  // descending: +NaN, +inf, 1, the four zeros in input order (-0.0 ties with
  // +0.0, as CUB documents), -1, -inf, -NaN
  CHECK((values_out == std::vector<int>{4, 5, 0, 1, 2, 8, 9, 3, 6, 7}));
  CHECK(std::signbit(keys_out[3]) && !std::signbit(keys_out[4]));  // keys keep their own bits
  if (!radix_sort(false, keys, values, keys_out, values_out, 0, 32)) return;
  CHECK((values_out == std::vector<int>{7, 6, 3, 1, 2, 8, 9, 0, 5, 4}));
}

void test_radix_random_keys() {
  std::mt19937_64 rng(20240611);
  for (int round = 0; round < 3; ++round) {
    const size_t n = round == 0 ? 1 : (round == 1 ? 37 : 5000);
    const std::vector<float> fkeys = awkward_keys<float>(n, rng);
    const std::vector<double> dkeys = awkward_keys<double>(n, rng);
    const int float_ranges[][2] = {{0, 32}, {8, 24}, {31, 32}, {20, 32}, {0, 1}, {5, 5}, {0, 0}, {32, 32}};
    for (const auto& r : float_ranges) {
      check_radix_against_reference<float, int>(fkeys, r[0], r[1], true);
      check_radix_against_reference<float, int64_t>(fkeys, r[0], r[1], true);
    }
    const int double_ranges[][2] = {{0, 64}, {40, 64}, {0, 33}, {63, 64}, {17, 50}};
    for (const auto& r : double_ranges) {
      check_radix_against_reference<double, int>(dkeys, r[0], r[1], true);
      check_radix_against_reference<double, long long>(dkeys, r[0], r[1], true);
    }
    check_radix_against_reference<float, int>(fkeys, 0, 32, false);
    check_radix_against_reference<double, int64_t>(dkeys, 0, 64, false);
  }
}

void test_radix_integer_keys() {
  std::mt19937_64 rng(7);
  std::vector<int> ikeys(3000);
  std::vector<unsigned> ukeys(3000);
  std::vector<long long> lkeys(3000);
  for (size_t i = 0; i < ikeys.size(); ++i) {
    ikeys[i] = (rng() % 3 == 0) ? int(rng() % 5) - 2 : static_cast<int>(rng());
    ukeys[i] = static_cast<unsigned>(rng() % 50);
    lkeys[i] = static_cast<long long>(rng()) >> (rng() % 60);
  }
  ikeys[0] = std::numeric_limits<int>::min();
  ikeys[1] = std::numeric_limits<int>::max();
  check_radix_against_reference<int, int>(ikeys, 0, 32, true);
  check_radix_against_reference<int, int>(ikeys, 3, 19, true);
  check_radix_against_reference<unsigned, int>(ukeys, 0, 32, true);
  check_radix_against_reference<long long, int64_t>(lkeys, 0, 64, true);
  check_radix_against_reference<long long, int64_t>(lkeys, 30, 63, false);
}

void test_radix_stability() {
  // many equal keys: their values (input positions) must stay increasing
  std::vector<double> keys(4000);
  std::vector<int> values(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i] = double(int(i * 7919 % 5)) * ((i % 3 == 0) ? -0.0 : 1.0);
    values[i] = static_cast<int>(i);
  }
  std::vector<double> keys_out;
  std::vector<int> values_out;
  if (!radix_sort(true, keys, values, keys_out, values_out, 0, 64)) return;
  bool stable = true;
  for (size_t i = 1; i < keys.size(); ++i) {
    if (keys_out[i] == keys_out[i - 1] && values_out[i] < values_out[i - 1]) stable = false;
    if (keys_out[i] > keys_out[i - 1]) stable = false;  // and descending
  }
  CHECK(stable);
}

void test_radix_reads_at_execution() {
  // the sort reads its input when the stream runs it, not at the call
  std::vector<float> keys = {1, 2, 3};
  std::vector<int> values = {0, 1, 2}, values_out(3, -1);
  std::vector<float> keys_out(3, -1);
  size_t bytes = 0;
  CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), 3) == cudaSuccess);
  std::vector<unsigned char> temp(bytes);
  CHECK(cub::DeviceRadixSort::SortPairsDescending(temp.data(), bytes, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), 3) == cudaSuccess);
  CHECK(mock::pending() == 1);
  CHECK(values_out[0] == -1);  // nothing done yet
  keys[0] = 10;               // written "by an earlier kernel" before the stream gets there
  CHECK(mock::flush() == 1);
  CHECK((values_out == std::vector<int>{0, 2, 1}));
}

void test_temp_storage_protocol() {
  const int n = 1000;
  std::vector<float> keys(n, 1.0f), keys_out(n, 0.0f);
  std::vector<int> values(n, 0), values_out(n, 5);
  size_t small = 0, large = 0, bytes = 0;
  CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, small, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), 10) == cudaSuccess);
  CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, large, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), 1000000) == cudaSuccess);
  CHECK(small >= 1 && large > small);
  CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), n) == cudaSuccess);
  CHECK(bytes >= size_t(n) * (sizeof(float) + sizeof(int)));  // the alternate buffers, as CUB's
  // too small: an error, a diagnostic naming the algorithm and sizes, nothing enqueued
  std::vector<unsigned char> temp(bytes, 0);
  size_t too_small = bytes - 1;
  mock::clear_diagnostics();
  CHECK(cub::DeviceRadixSort::SortPairsDescending(temp.data(), too_small, keys.data(), keys_out.data(),
                                                  values.data(), values_out.data(), n) == cudaErrorInvalidValue);
  CHECK(too_small == bytes - 1);
  CHECK(mock::pending() == 0);
  CHECK(mock::diagnostic_count() == 1);
  const std::string& d = mock::last_diagnostic();
  CHECK(d.find("SortPairsDescending") != std::string::npos);
  CHECK(d.find(std::to_string(bytes - 1)) != std::string::npos && d.find(std::to_string(bytes)) != std::string::npos);
  // enough: the work scribbles over the whole temp storage given (0xCB)
  size_t given = bytes;
  CHECK(cub::DeviceRadixSort::SortPairsDescending(temp.data(), given, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), n) == cudaSuccess);
  CHECK(temp[0] == 0);  // not before the stream runs it
  mock::flush();
  CHECK(std::all_of(temp.begin(), temp.end(), [](unsigned char b) { return b == 0xCB; }));
  CHECK(values_out[0] == 0 && keys_out[n - 1] == 1.0f);
  // no items: 1 byte asked, success without storage checks or work
  size_t empty = 0;
  CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, empty, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), 0) == cudaSuccess);
  CHECK(empty == 1);
  CHECK(cub::DeviceRadixSort::SortPairsDescending(temp.data(), empty, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), 0) == cudaSuccess);
  CHECK(mock::pending() == 0);
}

void test_radix_rejects() {
  const int n = 100;
  std::vector<double> keys(2 * n, 1.0), keys_out(n);
  std::vector<int64_t> values(2 * n, 0), values_out(n);
  size_t bytes = 0;
  CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), n) == cudaSuccess);
  std::vector<unsigned char> temp(bytes);
  auto call = [&](const double* ki, double* ko, const int64_t* vi, int64_t* vo, long long count, int begin_bit,
                  int end_bit, void* t) {
    mock::clear_diagnostics();
    size_t b = bytes;
    const cudaError_t e =
        cub::DeviceRadixSort::SortPairsDescending(t, b, ki, ko, vi, vo, count, begin_bit, end_bit, cudaStream_t(0));
    CHECK(mock::pending() == 0);
    CHECK(e != cudaSuccess && mock::diagnostic_count() == 1);
    return e;
  };
  // in place and partial overlaps (CUB allows none)
  CHECK(call(keys.data(), keys.data(), values.data(), values_out.data(), n, 0, 64, temp.data()) ==
        cudaErrorInvalidValue);
  CHECK(mock::last_diagnostic().find("overlaps") != std::string::npos);
  CHECK(call(keys.data(), keys_out.data(), values.data(), reinterpret_cast<int64_t*>(values.data() + n / 2), n, 0, 64,
             temp.data()) == cudaErrorInvalidValue);
  CHECK(call(keys.data(), keys_out.data(), values.data(), reinterpret_cast<int64_t*>(keys_out.data() + 1), n, 0, 64,
             temp.data()) == cudaErrorInvalidValue);
  CHECK(call(keys.data(), keys_out.data(), values.data(), values_out.data(), n, 0, 64,
             reinterpret_cast<unsigned char*>(keys_out.data()) + 8) == cudaErrorInvalidValue);
  // bit ranges and counts
  CHECK(call(keys.data(), keys_out.data(), values.data(), values_out.data(), n, -1, 64, temp.data()) ==
        cudaErrorInvalidValue);
  CHECK(call(keys.data(), keys_out.data(), values.data(), values_out.data(), n, 0, 65, temp.data()) ==
        cudaErrorInvalidValue);
  CHECK(call(keys.data(), keys_out.data(), values.data(), values_out.data(), n, 40, 20, temp.data()) ==
        cudaErrorInvalidValue);
  CHECK(call(keys.data(), keys_out.data(), values.data(), values_out.data(), -5, 0, 64, temp.data()) ==
        cudaErrorInvalidValue);
  CHECK(call(nullptr, keys_out.data(), values.data(), values_out.data(), n, 0, 64, temp.data()) ==
        cudaErrorInvalidValue);
  // a launch failure is the call's error, and the work is not leaked (ASan)
  mock::fail_next_launch(cudaErrorLaunchFailure);
  size_t b = bytes;
  CHECK(cub::DeviceRadixSort::SortPairsDescending(temp.data(), b, keys.data(), keys_out.data(), values.data(),
                                                  values_out.data(), n) == cudaErrorLaunchFailure);
  CHECK(mock::pending() == 0);
}

// ------------------------------------------------------------------ scan --

struct MinOp {
  __device__ double operator()(double a, double b) const { return fmin(a, b); }
};
struct MaxOp {
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
};
template <typename A>
struct MinOpT {
  __device__ A operator()(A a, A b) const { return b < a ? b : a; }
};

void test_scan() {
  std::mt19937_64 rng(99);
  const long long n = 3001;
  std::vector<double> in(n), out(n, -7.0), expected(n);
  for (auto& x : in) x = std::uniform_real_distribution<double>(-1e3, 1e3)(rng);
  in[5] = std::numeric_limits<double>::quiet_NaN();  // fmin ignores it
  size_t bytes = 0;
  CHECK(cub::DeviceScan::InclusiveScan(nullptr, bytes, static_cast<const double*>(nullptr),
                                       static_cast<double*>(nullptr), MinOp(), n) == cudaSuccess);
  CHECK(bytes >= 1);
  std::vector<unsigned char> temp(bytes, 0);
  size_t given = bytes;
  CHECK(cub::DeviceScan::InclusiveScan(temp.data(), given, in.data(), out.data(), MinOp(), n, cudaStream_t(0)) ==
        cudaSuccess);
  CHECK(out[0] == -7.0);  // not yet
  mock::flush();
  expected[0] = in[0];
  for (long long i = 1; i < n; ++i) expected[i] = std::fmin(expected[i - 1], in[i]);
  CHECK(out == expected);
  CHECK(temp[0] == 0xCB && temp[bytes - 1] == 0xCB);
  // max, and in place (d_in == d_out is allowed)
  std::vector<double> data = in;
  CHECK(cub::DeviceScan::InclusiveScan(temp.data(), given, data.data(), data.data(), MaxOp(), n) == cudaSuccess);
  mock::flush();
  expected[0] = in[0];
  for (long long i = 1; i < n; ++i) expected[i] = std::fmax(expected[i - 1], in[i]);
  CHECK(data == expected);
  // float with the templated operator, the in-place overload
  std::vector<float> f = {3, 5, 1, 2, 0.5f, 4};
  size_t fb = 0;
  CHECK(cub::DeviceScan::InclusiveScan(nullptr, fb, f.data(), MinOpT<float>(), 6) == cudaSuccess);
  std::vector<unsigned char> ftemp(fb);
  CHECK(cub::DeviceScan::InclusiveScan(ftemp.data(), fb, f.data(), MinOpT<float>(), 6) == cudaSuccess);
  mock::flush();
  CHECK((f == std::vector<float>{3, 3, 1, 1, 0.5f, 0.5f}));
  // overlap other than exact aliasing: rejected
  mock::clear_diagnostics();
  CHECK(cub::DeviceScan::InclusiveScan(temp.data(), given, in.data(), in.data() + 1, MinOp(), n - 1) ==
        cudaErrorInvalidValue);
  CHECK(mock::diagnostic_count() == 1 && mock::pending() == 0);
  // too small
  size_t too_small = bytes - 1;
  CHECK(cub::DeviceScan::InclusiveScan(temp.data(), too_small, in.data(), out.data(), MinOp(), n) ==
        cudaErrorInvalidValue);
  CHECK(mock::last_diagnostic().find("InclusiveScan") != std::string::npos);
  // empty: fine, no work
  CHECK(cub::DeviceScan::InclusiveScan(temp.data(), given, in.data(), out.data(), MinOp(), 0) == cudaSuccess);
  CHECK(mock::pending() == 0);
}

// -------------------------------------------------------------- flagged --

void test_flagged() {
  std::mt19937_64 rng(5);
  const long long n = 2500;
  std::vector<int64_t> in(n), out(n, -1), expected;
  std::vector<unsigned char> flags(n);
  for (long long i = 0; i < n; ++i) {
    in[i] = i * 3;
    flags[i] = static_cast<unsigned char>((rng() % 3 == 0) ? 0 : (rng() % 2 ? 1 : 255));
    if (flags[i]) expected.push_back(in[i]);
  }
  std::vector<int64_t> count(2, -1);
  size_t bytes = 0;
  CHECK(cub::DeviceSelect::Flagged(nullptr, bytes, static_cast<const int64_t*>(nullptr),
                                   static_cast<const unsigned char*>(nullptr), static_cast<int64_t*>(nullptr),
                                   static_cast<int64_t*>(nullptr), n) == cudaSuccess);
  std::vector<unsigned char> temp(bytes);
  size_t given = bytes;
  CHECK(cub::DeviceSelect::Flagged(temp.data(), given, in.data(), flags.data(), out.data(), count.data(), n,
                                   cudaStream_t(0)) == cudaSuccess);
  CHECK(count[0] == -1);
  mock::flush();
  CHECK(count[0] == static_cast<int64_t>(expected.size()) && count[1] == -1);
  CHECK(std::equal(expected.begin(), expected.end(), out.begin()));
  CHECK(out[expected.size()] == -1);  // nothing past the selection
  // an int count; no items still writes 0 (as CUB's init kernel)
  int small_count = 42;
  CHECK(cub::DeviceSelect::Flagged(temp.data(), given, in.data(), flags.data(), out.data(), &small_count, 0) ==
        cudaSuccess);
  mock::flush();
  CHECK(small_count == 0);
  // in place through this overload, and the count inside the input: rejected
  mock::clear_diagnostics();
  CHECK(cub::DeviceSelect::Flagged(temp.data(), given, in.data(), flags.data(), in.data(), count.data(), n) ==
        cudaErrorInvalidValue);
  CHECK(cub::DeviceSelect::Flagged(temp.data(), given, in.data(), flags.data(), out.data(), in.data() + 7, n) ==
        cudaErrorInvalidValue);
  CHECK(mock::diagnostic_count() == 2 && mock::pending() == 0);
  // an overlap known only on the stream: d_out's third item is a flag
  std::vector<int64_t> arena(64, 0);
  int64_t* arena_out = arena.data();
  unsigned char* arena_flags = reinterpret_cast<unsigned char*>(arena.data() + 2);
  std::vector<int64_t> few_in = {10, 11, 12, 13};
  for (int i = 0; i < 4; ++i) arena_flags[i] = 1;
  mock::clear_diagnostics();
  CHECK(cub::DeviceSelect::Flagged(temp.data(), given, few_in.data(), arena_flags, arena_out, count.data(), 4) ==
        cudaSuccess);
  count[0] = -1;
  mock::flush();
  CHECK(mock::fault_count() == 1 && mock::last_fault_error() == cudaErrorLaunchFailure);
  CHECK(mock::last_fault().find("overlaps") != std::string::npos);
  CHECK(count[0] == -1 && arena_out[0] == 0);  // nothing written
  // too small
  size_t too_small = bytes - 1;
  CHECK(cub::DeviceSelect::Flagged(temp.data(), too_small, in.data(), flags.data(), out.data(), count.data(), n) ==
        cudaErrorInvalidValue);
}

// ----------------------------------------------------- segmented sort --

struct Segments {
  std::vector<long long> begin, end;
};

// Runs DeviceSegmentedSort::SortPairs or StableSortPairs; outputs start as
// sentinels so that untouched items show.
bool segmented_sort(bool stable, const std::vector<double>& keys, const std::vector<long long>& values,
                    const Segments& s, std::vector<double>& keys_out, std::vector<long long>& values_out) {
  const long long n = static_cast<long long>(keys.size()), segments = static_cast<long long>(s.begin.size());
  keys_out.assign(keys.size(), -12345.0);
  values_out.assign(values.size(), -1);
  size_t bytes = 0;
  cudaError_t e = cub::DeviceSegmentedSort::SortPairs(
      nullptr, bytes, static_cast<const double*>(nullptr), static_cast<double*>(nullptr),
      static_cast<const long long*>(nullptr), static_cast<long long*>(nullptr), n, segments,
      static_cast<const long long*>(nullptr), static_cast<const long long*>(nullptr));
  if (!CHECK(e == cudaSuccess)) return false;
  std::vector<unsigned char> temp(bytes);
  e = stable ? cub::DeviceSegmentedSort::StableSortPairs(temp.data(), bytes, keys.data(), keys_out.data(),
                                                         values.data(), values_out.data(), n, segments,
                                                         s.begin.data(), s.end.data())
             : cub::DeviceSegmentedSort::SortPairs(temp.data(), bytes, keys.data(), keys_out.data(), values.data(),
                                                   values_out.data(), n, segments, s.begin.data(), s.end.data());
  if (!CHECK(e == cudaSuccess)) return false;
  mock::flush();
  return true;
}

void test_segmented_sort() {
  std::mt19937_64 rng(11);
  const long long n = 3000;
  std::vector<double> keys(n);
  std::vector<long long> values(n);
  for (long long i = 0; i < n; ++i) {
    keys[i] = (rng() % 2) ? double(int(rng() % 4)) : std::uniform_real_distribution<double>(-5, 5)(rng);
    if (i % 97 == 0) keys[i] = -0.0;
    values[i] = i;
  }
  // segments with gaps between them, empty ones (end == begin, end < begin)
  Segments s;
  long long at = 0;
  while (at < n) {
    const long long gap = static_cast<long long>(rng() % 4), size = static_cast<long long>(rng() % 60);
    const long long b = std::min(n, at + gap), e = std::min(n, b + size);
    s.begin.push_back(b);
    s.end.push_back(e);
    if (rng() % 10 == 0) {
      s.begin.push_back(e);
      s.end.push_back(b);
    }
    at = e;
  }
  std::vector<double> keys_out;
  std::vector<long long> values_out;
  for (int stable = 0; stable < 2; ++stable) {
    if (!segmented_sort(stable != 0, keys, values, s, keys_out, values_out)) return;
    std::vector<char> inside(n, 0);
    bool sorted = true, same_items = true, stable_ok = true;
    for (size_t g = 0; g < s.begin.size(); ++g) {
      const long long b = s.begin[g], e = s.end[g];
      if (e <= b) continue;
      for (long long i = b; i < e; ++i) inside[i] = 1;
      std::vector<long long> got, want;  // the segment's values, as multisets
      for (long long i = b; i < e; ++i) {
        if (i > b && reference_order(keys_out[i]) < reference_order(keys_out[i - 1])) sorted = false;
        if (i > b && stable && reference_order(keys_out[i]) == reference_order(keys_out[i - 1]) &&
            values_out[i] < values_out[i - 1]) {
          stable_ok = false;
        }
        const long long v = values_out[i];
        if (v < b || v >= e || !same_bits(keys_out[i], keys[v])) same_items = false;
        got.push_back(values_out[i]);
        want.push_back(values[i]);
      }
      std::sort(got.begin(), got.end());
      if (got != want) same_items = false;
    }
    CHECK(sorted);
    CHECK(same_items);
    CHECK(stable_ok);
    bool gaps_untouched = true;
    for (long long i = 0; i < n; ++i) {
      if (!inside[i] && (keys_out[i] != -12345.0 || values_out[i] != -1)) gaps_untouched = false;
    }
    CHECK(gaps_untouched);
  }
}

// SortPairs is not stable in CUB: equal keys come out shuffled (for some
// seed), StableSortPairs keeps them in order.
void test_segmented_sort_shuffles_ties() {
  std::vector<double> keys(50, 1.0);
  std::vector<long long> values(50);
  std::iota(values.begin(), values.end(), 0LL);
  const Segments s{{0}, {50}};
  std::vector<double> keys_out;
  std::vector<long long> values_out, first;
  int shuffled = 0, distinct = 0;
  for (unsigned long long seed = 1; seed <= 4; ++seed) {
    mock::seed_random(seed);
    if (!segmented_sort(false, keys, values, s, keys_out, values_out)) return;
    if (values_out != values) ++shuffled;
    if (seed == 1) first = values_out;
    else if (values_out != first) ++distinct;
    std::vector<long long> sorted = values_out;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == values);
  }
  CHECK(shuffled == 4);
  CHECK(distinct == 3);
  // reproducible from the seed
  mock::seed_random(1);
  if (segmented_sort(false, keys, values, s, keys_out, values_out)) CHECK(values_out == first);
  if (segmented_sort(true, keys, values, s, keys_out, values_out)) CHECK(values_out == values);
}

void test_segmented_sort_faults_and_rejects() {
  const long long n = 10;
  std::vector<double> keys = {5, 4, 3, 2, 1, 0, -1, -2, -3, -4}, keys_out(n, 9.0);
  std::vector<long long> values(n, 0), values_out(n, 9);
  std::vector<long long> offsets = {0, 4, 10};
  size_t bytes = 0;
  CHECK(cub::DeviceSegmentedSort::SortPairs(nullptr, bytes, keys.data(), keys_out.data(), values.data(),
                                            values_out.data(), n, 2, offsets.data(), offsets.data() + 1) ==
        cudaSuccess);
  std::vector<unsigned char> temp(bytes);
  size_t given = bytes;
  // the offsets are read on the stream: changed before it runs, they count
  CHECK(cub::DeviceSegmentedSort::SortPairs(temp.data(), given, keys.data(), keys_out.data(), values.data(),
                                            values_out.data(), n, 2, offsets.data(), offsets.data() + 1) ==
        cudaSuccess);
  offsets[1] = 2;
  mock::flush();
  CHECK((keys_out == std::vector<double>{4, 5, -4, -3, -2, -1, 0, 1, 2, 3}));
  // a segment past num_items, overlapping segments: reported, nothing written
  std::fill(keys_out.begin(), keys_out.end(), 9.0);
  // (the device's error becomes sticky, as for a kernel that faulted)
  std::vector<long long> past = {0, 11}, overlapping_begin = {0, 3}, overlapping_end = {5, 8};
  mock::clear_diagnostics();
  CHECK(cub::DeviceSegmentedSort::SortPairs(temp.data(), given, keys.data(), keys_out.data(), values.data(),
                                            values_out.data(), n, 1, past.data(), past.data() + 1) == cudaSuccess);
  mock::flush();
  CHECK(mock::fault_count() == 1 && mock::last_fault_error() == cudaErrorIllegalAddress);
  CHECK(mock::last_fault().find("[0, 11)") != std::string::npos);
  CHECK(cub::DeviceSegmentedSort::SortPairs(temp.data(), given, keys.data(), keys_out.data(), values.data(),
                                            values_out.data(), n, 2, overlapping_begin.data(),
                                            overlapping_end.data()) == cudaSuccess);
  mock::flush();
  CHECK(mock::fault_count() == 2 && mock::last_fault_error() == cudaErrorLaunchFailure);
  CHECK(mock::last_fault().find("overlaps") != std::string::npos);
  CHECK(mock::diagnostic_count() == 0);
  CHECK(std::all_of(keys_out.begin(), keys_out.end(), [](double k) { return k == 9.0; }));
  // in place, outputs over the offsets, too small: rejected at the call
  mock::clear_diagnostics();
  CHECK(cub::DeviceSegmentedSort::SortPairs(temp.data(), given, keys.data(), keys.data(), values.data(),
                                            values_out.data(), n, 2, offsets.data(), offsets.data() + 1) ==
        cudaErrorInvalidValue);
  CHECK(cub::DeviceSegmentedSort::SortPairs(temp.data(), given, keys.data(), keys_out.data(), values.data(),
                                            offsets.data(), 3, 2, offsets.data(), offsets.data() + 1) ==
        cudaErrorInvalidValue);
  size_t too_small = bytes - 1;
  CHECK(cub::DeviceSegmentedSort::SortPairs(temp.data(), too_small, keys.data(), keys_out.data(), values.data(),
                                            values_out.data(), n, 2, offsets.data(), offsets.data() + 1) ==
        cudaErrorInvalidValue);
  CHECK(mock::diagnostic_count() == 3 && mock::pending() == 0);
  CHECK(mock::last_diagnostic().find("DeviceSegmentedSort::SortPairs") != std::string::npos);
  // the project's query shape (kcenter.cu): grows with the sizes
  size_t small = 0, large = 0;
  CHECK(cub::DeviceSegmentedSort::SortPairs(nullptr, small, static_cast<const double*>(nullptr),
                                            static_cast<double*>(nullptr), static_cast<const long long*>(nullptr),
                                            static_cast<long long*>(nullptr), 10LL, 2LL,
                                            static_cast<const long long*>(nullptr),
                                            static_cast<const long long*>(nullptr)) == cudaSuccess);
  CHECK(cub::DeviceSegmentedSort::SortPairs(nullptr, large, static_cast<const double*>(nullptr),
                                            static_cast<double*>(nullptr), static_cast<const long long*>(nullptr),
                                            static_cast<long long*>(nullptr), 100000LL, 300LL,
                                            static_cast<const long long*>(nullptr),
                                            static_cast<const long long*>(nullptr)) == cudaSuccess);
  CHECK(small >= 1 && large > small);
}

}  // namespace

void run_cub_tests() {
  test_radix_known_order();
  test_radix_random_keys();
  test_radix_integer_keys();
  test_radix_stability();
  test_radix_reads_at_execution();
  test_temp_storage_protocol();
  test_radix_rejects();
  test_scan();
  test_flagged();
  test_segmented_sort();
  test_segmented_sort_shuffles_ties();
  test_segmented_sort_faults_and_rejects();
}
