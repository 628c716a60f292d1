// Read bandwidth of this machine, for the "floor" column of the benchmarks:
// every thread streams its share of a large buffer with wide loads.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "svp/kcenter.h"

namespace svp {

double measure_read_bandwidth(int64_t bytes, int num_threads, int repeats) {
  const int threads = num_threads > 0 ? num_threads : std::max(1, omp_get_max_threads());
  const int64_t words = std::max<int64_t>(bytes / 8, 1 << 16);
  std::vector<uint64_t> buf(static_cast<size_t>(words));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < words; ++i) buf[i] = static_cast<uint64_t>(i) * 2654435761u;  // first touch
  double best = 0;
  volatile uint64_t sink = 0;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    auto t0 = std::chrono::steady_clock::now();
    uint64_t acc = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(^ : acc)
    for (int64_t i = 0; i < words; i += 8) {
      uint64_t a = buf[i] ^ buf[i + 1] ^ buf[i + 2] ^ buf[i + 3];
      uint64_t b = buf[i + 4] ^ buf[i + 5] ^ buf[i + 6] ^ buf[i + 7];
      acc ^= a ^ b;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink ^ acc;
    best = std::max(best, static_cast<double>(words - words % 8) * 8.0 / s);
  }
  (void)sink;
  return best;
}

}  // namespace svp
