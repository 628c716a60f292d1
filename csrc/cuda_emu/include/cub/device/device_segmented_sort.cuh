// cub::DeviceSegmentedSort for the CPU emulation of CUDA: the ascending
// key-value sorts with separate input and output buffers (SortPairs,
// StableSortPairs), with CUB's signatures (cccl/cub/device/
// device_segmented_sort.cuh, CUDA 13) and temporary-storage protocol
// (emu/common.cuh), on the host in stream order.
//
// Semantics as CUB's:
//   - segment i is [d_begin_offsets[i], d_end_offsets[i]); one whose end is
//     not past its begin is empty; the offsets are device data, read when
//     the stream runs the sort;
//   - items outside every segment are neither read nor written;
//   - keys are ordered as CUB's radix sort orders them (emu/radix_key.cuh;
//     CUB sorts small segments by comparison, which agrees for every key but
//     NaN);
//   - SortPairs is NOT stable in CUB: equal keys here come out in a random
//     order (seeded from svp_emu_random_u64 at enqueue time), so that code
//     relying on an order CUB does not promise fails under emulation;
//     StableSortPairs keeps them in input order.
// Segments that fall outside [0, num_items) or overlap each other (CUB
// requires them not to) are found when the stream runs the sort: nothing is
// written and the device's error becomes sticky (cudaErrorIllegalAddress,
// cudaErrorLaunchFailure), as for a kernel that faulted.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "cub/emu/common.cuh"
#include "cub/emu/radix_key.cuh"

namespace cub {

namespace emu {

template <typename KeyT, typename ValueT, typename BeginOffsetIteratorT, typename EndOffsetIteratorT>
class SegmentedSortPairsWork final : public HostWork {
 public:
  SegmentedSortPairsWork(const char* algorithm, void* d_temp_storage, size_t temp_storage_bytes,
                         const KeyT* d_keys_in, KeyT* d_keys_out, const ValueT* d_values_in,
                         ValueT* d_values_out, long long num_items, long long num_segments,
                         BeginOffsetIteratorT d_begin_offsets, EndOffsetIteratorT d_end_offsets, bool stable,
                         unsigned long long shuffle_seed)
      : HostWork(algorithm, d_temp_storage, temp_storage_bytes),
        keys_in_(d_keys_in),
        keys_out_(d_keys_out),
        values_in_(d_values_in),
        values_out_(d_values_out),
        num_items_(num_items),
        num_segments_(num_segments),
        begin_offsets_(d_begin_offsets),
        end_offsets_(d_end_offsets),
        stable_(stable),
        shuffle_seed_(shuffle_seed) {}

 protected:
  void execute() override {
    // read and check every segment before writing anything
    std::vector<std::pair<long long, long long>> segments;
    std::vector<unsigned char> covered(static_cast<size_t>(num_items_), 0);
    for (long long s = 0; s < num_segments_; ++s) {
      const long long begin = static_cast<long long>(begin_offsets_[s]);
      const long long end = static_cast<long long>(end_offsets_[s]);
      if (end <= begin) continue;  // empty
      if (begin < 0 || end > num_items_) {
        report_execution_fault(cudaErrorIllegalAddress,
                               "%s (executing on its stream): segment %lld = [%lld, %lld) is not within "
                               "[0, num_items = %lld); nothing was written",
                               algorithm(), s, begin, end, num_items_);
        return;
      }
      for (long long i = begin; i < end; ++i) {
        if (covered[static_cast<size_t>(i)]) {
          report_execution_fault(cudaErrorLaunchFailure,
                                 "%s (executing on its stream): segment %lld = [%lld, %lld) overlaps an "
                                 "earlier segment at item %lld; nothing was written",
                                 algorithm(), s, begin, end, i);
          return;
        }
        covered[static_cast<size_t>(i)] = 1;
      }
      segments.emplace_back(begin, end);
    }
    SplitMix64 random(shuffle_seed_);
    std::vector<long long> order;
    std::vector<typename RadixKey<KeyT>::Bits> ordered_key;
    for (const auto& segment : segments) {
      const long long begin = segment.first, size = segment.second - segment.first;
      order.resize(static_cast<size_t>(size));
      ordered_key.resize(static_cast<size_t>(size));
      for (long long i = 0; i < size; ++i) {
        order[i] = i;
        ordered_key[i] = RadixKey<KeyT>::ordered(keys_in_[begin + i]);
      }
      if (!stable_) {
        // a uniformly random order among equal keys: shuffle, then sort stably
        for (long long i = size - 1; i > 0; --i) {
          std::swap(order[i], order[static_cast<long long>(random.below(static_cast<unsigned long long>(i + 1)))]);
        }
      }
      std::stable_sort(order.begin(), order.end(),
                       [&](long long a, long long b) { return ordered_key[a] < ordered_key[b]; });
      for (long long i = 0; i < size; ++i) {
        keys_out_[begin + i] = keys_in_[begin + order[i]];
        values_out_[begin + i] = values_in_[begin + order[i]];
      }
    }
  }

 private:
  const KeyT* keys_in_;
  KeyT* keys_out_;
  const ValueT* values_in_;
  ValueT* values_out_;
  long long num_items_, num_segments_;
  BeginOffsetIteratorT begin_offsets_;
  EndOffsetIteratorT end_offsets_;
  bool stable_;
  unsigned long long shuffle_seed_;
};

template <typename KeyT, typename ValueT, typename BeginOffsetIteratorT, typename EndOffsetIteratorT>
inline cudaError_t segmented_sort_pairs(const char* algorithm, bool stable, void* d_temp_storage,
                                        size_t& temp_storage_bytes, const KeyT* d_keys_in, KeyT* d_keys_out,
                                        const ValueT* d_values_in, ValueT* d_values_out, long long num_items,
                                        long long num_segments, BeginOffsetIteratorT d_begin_offsets,
                                        EndOffsetIteratorT d_end_offsets, cudaStream_t stream) {
  (void)RadixKey<KeyT>::kBits;  // the key type's check, also for a size query
  if (num_items < 0) return reject("%s: num_items = %lld is negative", algorithm, num_items);
  if (num_segments < 0) return reject("%s: num_segments = %lld is negative", algorithm, num_segments);
  // the alternate key and value buffers, the large/small segment index
  // lists (4 bytes per segment each) and their partition's counters
  const size_t required = TempStorageSize()
                              .allocation(static_cast<size_t>(num_items) * sizeof(KeyT))
                              .allocation(static_cast<size_t>(num_items) * sizeof(ValueT))
                              .allocation(static_cast<size_t>(num_segments) * 4)
                              .allocation(static_cast<size_t>(num_segments) * 4)
                              .allocation(tile_status_bytes(num_segments))
                              .bytes();
  cudaError_t result = cudaSuccess;
  if (!temp_storage_ready(algorithm, d_temp_storage, temp_storage_bytes, required, result)) return result;
  // as CUB: an empty problem launches nothing
  if (num_items == 0 || num_segments == 0) return cudaSuccess;
  if (!d_keys_in || !d_keys_out || !d_values_in || !d_values_out) {
    return reject("%s: a key or value pointer is null (keys %p -> %p, values %p -> %p) with num_items = %lld",
                  algorithm, static_cast<const void*>(d_keys_in), static_cast<void*>(d_keys_out),
                  static_cast<const void*>(d_values_in), static_cast<void*>(d_values_out), num_items);
  }
  if constexpr (std::is_pointer<BeginOffsetIteratorT>::value) {
    if (d_begin_offsets == nullptr) return reject("%s: d_begin_offsets is null", algorithm);
  }
  if constexpr (std::is_pointer<EndOffsetIteratorT>::value) {
    if (d_end_offsets == nullptr) return reject("%s: d_end_offsets is null", algorithm);
  }
  // CUB: no output may overlap an input or the offsets (begin and end
  // offsets may alias each other, both being read only)
  result = reject_overlaps(
      algorithm,
      {byte_range("d_keys_in", d_keys_in, num_items, false), byte_range("d_values_in", d_values_in, num_items, false),
       byte_range("d_begin_offsets", d_begin_offsets, num_segments, false),
       byte_range("d_end_offsets", d_end_offsets, num_segments, false),
       byte_range("d_keys_out", d_keys_out, num_items, true), byte_range("d_values_out", d_values_out, num_items, true),
       byte_range("d_temp_storage", static_cast<unsigned char*>(d_temp_storage),
                  static_cast<long long>(temp_storage_bytes), true)});
  if (result != cudaSuccess) return result;
  const unsigned long long shuffle_seed = stable ? 0 : svp_emu_random_u64();
  return enqueue<SegmentedSortPairsWork<KeyT, ValueT, BeginOffsetIteratorT, EndOffsetIteratorT>>(
      stream, algorithm, d_temp_storage, temp_storage_bytes, d_keys_in, d_keys_out, d_values_in, d_values_out,
      num_items, num_segments, d_begin_offsets, d_end_offsets, stable, shuffle_seed);
}

}  // namespace emu

struct DeviceSegmentedSort {
  // Sorts each segment of key-value pairs into ascending order; equal keys
  // in no particular order (here: a random one).
  template <typename KeyT, typename ValueT, typename BeginOffsetIteratorT, typename EndOffsetIteratorT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                               KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out,
                               ::std::int64_t num_items, ::std::int64_t num_segments,
                               BeginOffsetIteratorT d_begin_offsets, EndOffsetIteratorT d_end_offsets,
                               cudaStream_t stream = 0) {
    return emu::segmented_sort_pairs("cub::DeviceSegmentedSort::SortPairs", false, d_temp_storage,
                                     temp_storage_bytes, d_keys_in, d_keys_out, d_values_in, d_values_out,
                                     num_items, num_segments, d_begin_offsets, d_end_offsets, stream);
  }

  // Sorts each segment of key-value pairs into ascending order; equal keys
  // keep their input order.
  template <typename KeyT, typename ValueT, typename BeginOffsetIteratorT, typename EndOffsetIteratorT>
  static cudaError_t StableSortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                     KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out,
                                     ::std::int64_t num_items, ::std::int64_t num_segments,
                                     BeginOffsetIteratorT d_begin_offsets, EndOffsetIteratorT d_end_offsets,
                                     cudaStream_t stream = 0) {
    return emu::segmented_sort_pairs("cub::DeviceSegmentedSort::StableSortPairs", true, d_temp_storage,
                                     temp_storage_bytes, d_keys_in, d_keys_out, d_values_in, d_values_out,
                                     num_items, num_segments, d_begin_offsets, d_end_offsets, stream);
  }
};

}  // namespace cub
