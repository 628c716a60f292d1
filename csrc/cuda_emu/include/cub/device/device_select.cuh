// cub::DeviceSelect::Flagged for the CPU emulation of CUDA, with CUB's
// signature (cccl/cub/device/device_select.cuh, CUDA 13) and temporary-storage
// protocol (emu/common.cuh): a stable compaction on the host, in stream order.
//
// Semantics as CUB's: the items whose flag converts to true are copied to
// d_out in their input order and their count is written to
// *d_num_selected_out (also when num_items is 0: CUB's init kernel writes the
// 0). [d_out, d_out + count) may not overlap d_in, d_flags or
// d_num_selected_out; count is known only when the stream runs the work, so
// that part of the check runs then.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <type_traits>

#include "cub/emu/common.cuh"

namespace cub {

namespace emu {

template <typename InputIteratorT, typename FlagIteratorT, typename OutputIteratorT, typename NumSelectedIteratorT>
class FlaggedWork final : public HostWork {
 public:
  FlaggedWork(const char* algorithm, void* d_temp_storage, size_t temp_storage_bytes, InputIteratorT d_in,
              FlagIteratorT d_flags, OutputIteratorT d_out, NumSelectedIteratorT d_num_selected_out,
              long long num_items)
      : HostWork(algorithm, d_temp_storage, temp_storage_bytes),
        in_(d_in),
        flags_(d_flags),
        out_(d_out),
        num_selected_out_(d_num_selected_out),
        num_items_(num_items) {}

 protected:
  void execute() override {
    long long selected = 0;
    for (long long i = 0; i < num_items_; ++i) selected += static_cast<bool>(flags_[i]) ? 1 : 0;
    if (execution_overlaps(algorithm(),
                           {byte_range("d_out", out_, selected, true), byte_range("d_in", in_, num_items_, false),
                            byte_range("d_flags", flags_, num_items_, false),
                            byte_range("d_num_selected_out", num_selected_out_, 1, true),
                            temp_storage_range()})) {
      return;
    }
    long long written = 0;
    for (long long i = 0; i < num_items_; ++i) {
      if (static_cast<bool>(flags_[i])) out_[written++] = in_[i];
    }
    using CountT = typename std::iterator_traits<NumSelectedIteratorT>::value_type;
    *num_selected_out_ = static_cast<CountT>(selected);
  }

 private:
  InputIteratorT in_;
  FlagIteratorT flags_;
  OutputIteratorT out_;
  NumSelectedIteratorT num_selected_out_;
  long long num_items_;
};

}  // namespace emu

struct DeviceSelect {
  // Copies the items of d_in whose flag is nonzero to d_out, in order, and
  // their count to *d_num_selected_out.
  template <typename InputIteratorT, typename FlagIterator, typename OutputIteratorT, typename NumSelectedIteratorT>
  static cudaError_t Flagged(void* d_temp_storage, size_t& temp_storage_bytes, InputIteratorT d_in,
                             FlagIterator d_flags, OutputIteratorT d_out, NumSelectedIteratorT d_num_selected_out,
                             ::std::int64_t num_items, cudaStream_t stream = 0) {
    constexpr const char* algorithm = "cub::DeviceSelect::Flagged";
    long long n = 0;
    if (!emu::item_count(num_items, n)) {
      return emu::reject("%s: num_items = %lld is negative", algorithm, static_cast<long long>(num_items));
    }
    // CUB: tile status words (offsets and counts of a look-back pass)
    const size_t required = emu::TempStorageSize().allocation(emu::tile_status_bytes(n)).bytes();
    cudaError_t result = cudaSuccess;
    if (!emu::temp_storage_ready(algorithm, d_temp_storage, temp_storage_bytes, required, result)) {
      return result;
    }
    if constexpr (std::is_pointer<NumSelectedIteratorT>::value) {
      if (d_num_selected_out == nullptr) return emu::reject("%s: d_num_selected_out is null", algorithm);
    }
    if (n > 0) {
      if constexpr (std::is_pointer<InputIteratorT>::value) {
        if (d_in == nullptr) return emu::reject("%s: d_in is null with num_items = %lld", algorithm, n);
      }
      if constexpr (std::is_pointer<FlagIterator>::value) {
        if (d_flags == nullptr) return emu::reject("%s: d_flags is null with num_items = %lld", algorithm, n);
      }
      if constexpr (std::is_pointer<OutputIteratorT>::value) {
        if (d_out == nullptr) return emu::reject("%s: d_out is null with num_items = %lld", algorithm, n);
      }
    }
    // What is known now: d_out's first item (written whenever anything is
    // selected) and the count may not sit in the inputs or the temp storage;
    // the whole written range is checked again on the stream.
    result = emu::reject_overlaps(
        algorithm, {emu::byte_range("d_out", d_out, n > 0 ? 1 : 0, true), emu::byte_range("d_in", d_in, n, false),
                    emu::byte_range("d_flags", d_flags, n, false),
                    emu::byte_range("d_num_selected_out", d_num_selected_out, 1, true),
                    emu::byte_range("d_temp_storage", static_cast<unsigned char*>(d_temp_storage),
                                    static_cast<long long>(temp_storage_bytes), true)});
    if (result != cudaSuccess) return result;
    return emu::enqueue<emu::FlaggedWork<InputIteratorT, FlagIterator, OutputIteratorT, NumSelectedIteratorT>>(
        stream, algorithm, d_temp_storage, temp_storage_bytes, d_in, d_flags, d_out, d_num_selected_out, n);
  }
};

}  // namespace cub
