// cub::DeviceRadixSort for the CPU emulation of CUDA: the key-value sorts
// with separate input and output buffers (SortPairs, SortPairsDescending),
// with CUB's signatures (cccl/cub/device/device_radix_sort.cuh, CUDA 13),
// temporary-storage protocol and order (emu/radix_key.cuh). The sort runs
// on the host in stream order (emu/common.cuh). It is stable, as CUB's is:
// it is an LSD radix sort over the selected bits, one byte per pass.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cub/emu/common.cuh"
#include "cub/emu/radix_key.cuh"

namespace cub {

namespace emu {

template <typename KeyT, typename ValueT>
class RadixSortPairsWork final : public HostWork {
 public:
  RadixSortPairsWork(const char* algorithm, void* d_temp_storage, size_t temp_storage_bytes,
                     const KeyT* d_keys_in, KeyT* d_keys_out, const ValueT* d_values_in,
                     ValueT* d_values_out, long long num_items, int begin_bit, int end_bit,
                     bool descending)
      : HostWork(algorithm, d_temp_storage, temp_storage_bytes),
        keys_in_(d_keys_in),
        keys_out_(d_keys_out),
        values_in_(d_values_in),
        values_out_(d_values_out),
        num_items_(num_items),
        begin_bit_(begin_bit),
        end_bit_(end_bit),
        descending_(descending) {}

 protected:
  void execute() override {
    const size_t n = static_cast<size_t>(num_items_);
    const int width = end_bit_ - begin_bit_;
    // the compared digits of every key (complemented for descending order)
    const uint64_t field_mask = width >= 64 ? ~uint64_t(0) : ((uint64_t(1) << width) - 1);
    std::vector<uint64_t> field(n);
    for (size_t i = 0; i < n; ++i) {
      const uint64_t f = bit_field(RadixKey<KeyT>::ordered(keys_in_[i]), begin_bit_, end_bit_);
      field[i] = descending_ ? (~f & field_mask) : f;
    }
    // LSD: a stable counting sort of the positions per byte, lowest first
    std::vector<size_t> order(n), next(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    for (int shift = 0; shift < width; shift += 8) {
      size_t bucket_start[257] = {};
      for (size_t i = 0; i < n; ++i) ++bucket_start[((field[order[i]] >> shift) & 0xFF) + 1];
      for (int d = 0; d < 256; ++d) bucket_start[d + 1] += bucket_start[d];
      for (size_t i = 0; i < n; ++i) next[bucket_start[(field[order[i]] >> shift) & 0xFF]++] = order[i];
      order.swap(next);
    }
    // the keys come out with their own bits (-0.0 stays -0.0)
    for (size_t i = 0; i < n; ++i) {
      keys_out_[i] = keys_in_[order[i]];
      values_out_[i] = values_in_[order[i]];
    }
  }

 private:
  const KeyT* keys_in_;
  KeyT* keys_out_;
  const ValueT* values_in_;
  ValueT* values_out_;
  long long num_items_;
  int begin_bit_, end_bit_;
  bool descending_;
};

// Both directions: argument checks, the size protocol, the enqueue.
template <typename KeyT, typename ValueT, typename NumItemsT>
inline cudaError_t radix_sort_pairs(const char* algorithm, bool descending, void* d_temp_storage,
                                    size_t& temp_storage_bytes, const KeyT* d_keys_in, KeyT* d_keys_out,
                                    const ValueT* d_values_in, ValueT* d_values_out,
                                    NumItemsT num_items, int begin_bit, int end_bit,
                                    cudaStream_t stream) {
  long long n = 0;
  if (!item_count(num_items, n)) {
    return reject("%s: num_items = %lld is negative or too large", algorithm,
                  static_cast<long long>(num_items));
  }
  if (begin_bit < 0 || end_bit > RadixKey<KeyT>::kBits || begin_bit > end_bit) {
    return reject("%s: the bit range [%d, %d) is not within [0, %d] (the key's bits) or is reversed",
                  algorithm, begin_bit, end_bit, RadixKey<KeyT>::kBits);
  }
  // CUB returns at once for an empty problem, asking 1 byte on a query
  // (and checks neither the storage nor the pointers)
  if (n == 0) {
    if (d_temp_storage == nullptr) temp_storage_bytes = 1;
    return cudaSuccess;
  }
  // the histograms (a 256-bin one per 8-bit pass, 8-byte counts), the
  // look-back tile counters, and the alternate key and value buffers
  const int passes = (end_bit - begin_bit + 7) / 8;
  const size_t required = TempStorageSize()
                              .allocation(size_t(256) * passes * sizeof(long long))
                              .allocation(static_cast<size_t>((n + 4095) / 4096) * 256 * sizeof(int))
                              .allocation(static_cast<size_t>(n) * sizeof(KeyT))
                              .allocation(static_cast<size_t>(n) * sizeof(ValueT))
                              .bytes();
  cudaError_t result = cudaSuccess;
  if (!temp_storage_ready(algorithm, d_temp_storage, temp_storage_bytes, required, result)) return result;
  if (!d_keys_in || !d_keys_out || !d_values_in || !d_values_out) {
    return reject("%s: a key or value pointer is null (keys %p -> %p, values %p -> %p) with num_items = %lld",
                  algorithm, static_cast<const void*>(d_keys_in), static_cast<void*>(d_keys_out),
                  static_cast<const void*>(d_values_in), static_cast<void*>(d_values_out), n);
  }
  // CUB: "There must be no overlap between any of the provided ranges"
  result = reject_overlaps(
      algorithm, {byte_range("d_keys_in", d_keys_in, n, false), byte_range("d_values_in", d_values_in, n, false),
                  byte_range("d_keys_out", d_keys_out, n, true), byte_range("d_values_out", d_values_out, n, true),
                  byte_range("d_temp_storage", static_cast<unsigned char*>(d_temp_storage),
                             static_cast<long long>(temp_storage_bytes), true)});
  if (result != cudaSuccess) return result;
  return enqueue<RadixSortPairsWork<KeyT, ValueT>>(stream, algorithm, d_temp_storage, temp_storage_bytes,
                                                   d_keys_in, d_keys_out, d_values_in, d_values_out, n,
                                                   begin_bit, end_bit, descending);
}

}  // namespace emu

struct DeviceRadixSort {
  // Sorts key-value pairs into ascending order (stable).
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                               KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out,
                               NumItemsT num_items, int begin_bit = 0, int end_bit = sizeof(KeyT) * 8,
                               cudaStream_t stream = 0) {
    return emu::radix_sort_pairs("cub::DeviceRadixSort::SortPairs", false, d_temp_storage,
                                 temp_storage_bytes, d_keys_in, d_keys_out, d_values_in, d_values_out,
                                 num_items, begin_bit, end_bit, stream);
  }

  // Sorts key-value pairs into descending order (stable: equal keys keep
  // their input order).
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairsDescending(void* d_temp_storage, size_t& temp_storage_bytes,
                                         const KeyT* d_keys_in, KeyT* d_keys_out, const ValueT* d_values_in,
                                         ValueT* d_values_out, NumItemsT num_items, int begin_bit = 0,
                                         int end_bit = sizeof(KeyT) * 8, cudaStream_t stream = 0) {
    return emu::radix_sort_pairs("cub::DeviceRadixSort::SortPairsDescending", true, d_temp_storage,
                                 temp_storage_bytes, d_keys_in, d_keys_out, d_values_in, d_values_out,
                                 num_items, begin_bit, end_bit, stream);
  }
};

}  // namespace cub
