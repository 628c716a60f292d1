// cub::DeviceScan::InclusiveScan for the CPU emulation of CUDA, with CUB's
// signatures (cccl/cub/device/device_scan.cuh, CUDA 13) and temporary-storage
// protocol (emu/common.cuh): a left fold on the host, in stream order.
//
// Semantics as CUB's: out[0] = in[0], out[i] = op(out[i-1], in[i]), the
// running value held in the accumulator type CUB uses (what op returns for
// two inputs, decayed). CUB promises no order of application beyond
// associativity; the sequential fold is one valid order, and the exact one
// for the min/max operators the project scans with.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <iterator>
#include <type_traits>

#include "cub/emu/common.cuh"

namespace cub {

namespace emu {

template <typename InputIteratorT, typename OutputIteratorT, typename ScanOpT>
class InclusiveScanWork final : public HostWork {
 public:
  InclusiveScanWork(const char* algorithm, void* d_temp_storage, size_t temp_storage_bytes,
                    InputIteratorT d_in, OutputIteratorT d_out, ScanOpT scan_op, long long num_items)
      : HostWork(algorithm, d_temp_storage, temp_storage_bytes),
        in_(d_in),
        out_(d_out),
        scan_op_(scan_op),
        num_items_(num_items) {}

 protected:
  void execute() override {
    using InputT = typename std::iterator_traits<InputIteratorT>::value_type;
    using AccumT = std::decay_t<std::invoke_result_t<ScanOpT&, InputT, InputT>>;
    if (num_items_ == 0) return;
    // in place (d_in == d_out) works: in[i] is read before out[i] is written
    AccumT running = static_cast<AccumT>(in_[0]);
    out_[0] = running;
    for (long long i = 1; i < num_items_; ++i) {
      running = static_cast<AccumT>(scan_op_(running, static_cast<InputT>(in_[i])));
      out_[i] = running;
    }
  }

 private:
  InputIteratorT in_;
  OutputIteratorT out_;
  ScanOpT scan_op_;
  long long num_items_;
};

}  // namespace emu

struct DeviceScan {
  // Inclusive prefix scan with scan_op. d_in may equal d_out (in place);
  // the two ranges may not overlap in any other way.
  template <typename InputIteratorT, typename OutputIteratorT, typename ScanOpT, typename NumItemsT>
  static cudaError_t InclusiveScan(void* d_temp_storage, size_t& temp_storage_bytes, InputIteratorT d_in,
                                   OutputIteratorT d_out, ScanOpT scan_op, NumItemsT num_items,
                                   cudaStream_t stream = 0) {
    constexpr const char* algorithm = "cub::DeviceScan::InclusiveScan";
    long long n = 0;
    if (!emu::item_count(num_items, n)) {
      return emu::reject("%s: num_items = %lld is negative or too large", algorithm,
                         static_cast<long long>(num_items));
    }
    // CUB: tile status words for a decoupled look-back (also for 0 items)
    const size_t required = emu::TempStorageSize().allocation(emu::tile_status_bytes(n)).bytes();
    cudaError_t result = cudaSuccess;
    if (!emu::temp_storage_ready(algorithm, d_temp_storage, temp_storage_bytes, required, result)) {
      return result;
    }
    if (n == 0) return cudaSuccess;  // as CUB: nothing launched for an empty problem
    if constexpr (std::is_pointer<InputIteratorT>::value) {
      if (d_in == nullptr) return emu::reject("%s: d_in is null with num_items = %lld", algorithm, n);
    }
    if constexpr (std::is_pointer<OutputIteratorT>::value) {
      if (d_out == nullptr) return emu::reject("%s: d_out is null with num_items = %lld", algorithm, n);
    }
    // the one alias CUB allows: d_in == d_out exactly
    bool in_place = false;
    if constexpr (std::is_pointer<InputIteratorT>::value && std::is_pointer<OutputIteratorT>::value) {
      in_place = static_cast<const volatile void*>(d_in) == static_cast<const volatile void*>(d_out) &&
                 sizeof(*d_in) == sizeof(*d_out);
    }
    const emu::ByteRange temp = emu::byte_range("d_temp_storage", static_cast<unsigned char*>(d_temp_storage),
                                                static_cast<long long>(temp_storage_bytes), true);
    const emu::ByteRange out = emu::byte_range("d_out", d_out, n, true);
    result = in_place ? emu::reject_overlaps(algorithm, {out, temp})
                      : emu::reject_overlaps(algorithm, {emu::byte_range("d_in", d_in, n, false), out, temp});
    if (result != cudaSuccess) return result;
    return emu::enqueue<emu::InclusiveScanWork<InputIteratorT, OutputIteratorT, ScanOpT>>(
        stream, algorithm, d_temp_storage, temp_storage_bytes, d_in, d_out, scan_op, n);
  }

  // In place (CUB's overload of the same name).
  template <typename IteratorT, typename ScanOpT, typename NumItemsT>
  static cudaError_t InclusiveScan(void* d_temp_storage, size_t& temp_storage_bytes, IteratorT d_data,
                                   ScanOpT scan_op, NumItemsT num_items, cudaStream_t stream = 0) {
    return InclusiveScan(d_temp_storage, temp_storage_bytes, d_data, d_data, scan_op, num_items, stream);
  }
};

}  // namespace cub
