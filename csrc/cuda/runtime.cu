// Device discovery and error reporting for the CUDA backend.
#include <cuda_runtime.h>

#include "common.cuh"

namespace svp {
namespace cuda {

void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a sticky launch error so later calls can report theirs
  std::string msg = format("CUDA error %s (%d): %s, in %s at %s:%d", cudaGetErrorName(err),
                           static_cast<int>(err), cudaGetErrorString(err), what, file, line);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver)
    msg = "no CUDA device: " + msg;
  throw CudaError(msg);
}

DeviceGuard::DeviceGuard(int device) {
  SVP_CUDA(cudaGetDevice(&previous_));
  if (previous_ != device) SVP_CUDA(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_ && previous_ >= 0)
    cudaSetDevice(previous_);
}

int device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) throw_cuda(err, "cudaGetDeviceCount", __FILE__, __LINE__);
  if (n == 0) throw CudaError("no CUDA device: the driver reports no device");
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop;
  SVP_CUDA(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

}  // namespace cuda
}  // namespace svp
