// The CUDA runtime API on the CPU (the part the project calls), for the
// emulated build: device memory is host memory; streams are queues run in
// order by worker threads, so kernel launches and asynchronous copies return
// before their work is done, as on a GPU; events mark points in a stream;
// a failed kernel makes the device's error sticky until cudaDeviceReset.
//
// The modelled device is an NVIDIA H200 (sm_90, 132 multiprocessors, of
// which SVP_EMU_SMS are modelled: 2 by default, for speed): its limits are
// what the launch checks and the occupancy query use.
#include <cuda_occupancy.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime.h"
#include "svp_emu/hooks.h"

namespace svp_emu {

// ------------------------------------------------------------- settings --

namespace {

long long env_int(const char* name, long long fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (end == v || *end) {
    fprintf(stderr, "svp_emu: %s=%s is not an integer; using %lld\n", name, v, fallback);
    return fallback;
  }
  return x;
}

}  // namespace

Options& options() {
  static Options o = [] {
    Options x;
    x.seed = static_cast<uint64_t>(env_int("SVP_EMU_SEED", 1));
    x.sms = static_cast<int>(std::max(1LL, std::min(132LL, env_int("SVP_EMU_SMS", 2))));
    x.stack_bytes = static_cast<size_t>(std::max(16LL, env_int("SVP_EMU_STACK_KB",
#if defined(__SANITIZE_ADDRESS__)
                                                               256
#else
                                                               64
#endif
                                                               ))) << 10;
    x.hang_seconds = static_cast<double>(std::max(1LL, env_int("SVP_EMU_HANG_SECONDS", 120)));
    x.max_resident = static_cast<int>(std::max(1LL, env_int("SVP_EMU_MAX_RESIDENT", 32)));
    x.quiet = env_int("SVP_EMU_QUIET", 0) != 0;
    x.slot_exit_pause_us = static_cast<int>(std::max(0LL, std::min(1000000LL, env_int("SVP_EMU_SLOT_EXIT_PAUSE_US", 0))));
    return x;
  }();
  return o;
}

namespace {

std::mutex g_random_mutex;
uint64_t g_random_state = 0;
bool g_random_seeded = false;

}  // namespace

uint64_t next_random() {
  std::lock_guard<std::mutex> lock(g_random_mutex);
  if (!g_random_seeded) {
    g_random_state = options().seed * 0xD1342543DE82EF95ull + 1;
    g_random_seeded = true;
  }
  uint64_t z = (g_random_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// ------------------------------------------------------ the device model --

namespace {

cudaDeviceProp make_properties() {
  cudaDeviceProp p;
  std::memset(&p, 0, sizeof(p));
  std::snprintf(p.name, sizeof(p.name), "NVIDIA H200 (svp_fast CUDA emulation, %d of 132 SMs)",
                options().sms);
  p.totalGlobalMem = static_cast<size_t>(DeviceModel::kGlobalMemory);
  p.sharedMemPerBlock = DeviceModel::kSharedPerBlockDefault;
  p.regsPerBlock = DeviceModel::kRegistersPerBlock;
  p.warpSize = 32;
  p.memPitch = 2147483647;
  p.maxThreadsPerBlock = DeviceModel::kMaxThreadsPerBlock;
  p.maxThreadsDim[0] = 1024;
  p.maxThreadsDim[1] = 1024;
  p.maxThreadsDim[2] = 64;
  p.maxGridSize[0] = 2147483647;
  p.maxGridSize[1] = 65535;
  p.maxGridSize[2] = 65535;
  p.totalConstMem = 65536;
  p.major = 9;
  p.minor = 0;
  p.textureAlignment = 512;
  p.multiProcessorCount = options().sms;
  p.integrated = 0;
  p.canMapHostMemory = 1;
  p.concurrentKernels = 1;
  p.ECCEnabled = 1;
  p.pciBusID = 0;
  p.asyncEngineCount = 3;
  p.unifiedAddressing = 1;
  p.memoryBusWidth = 6144;
  p.l2CacheSize = 60 << 20;
  p.maxThreadsPerMultiProcessor = DeviceModel::kMaxThreadsPerSM;
  p.streamPrioritiesSupported = 1;
  p.globalL1CacheSupported = 1;
  p.localL1CacheSupported = 1;
  p.sharedMemPerMultiprocessor = DeviceModel::kSharedPerSM;
  p.regsPerMultiprocessor = DeviceModel::kRegistersPerSM;
  p.managedMemory = 1;
  p.isMultiGpuBoard = 0;
  p.concurrentManagedAccess = 1;
  p.cooperativeLaunch = 1;
  p.sharedMemPerBlockOptin = DeviceModel::kSharedPerBlockOptin;
  p.maxBlocksPerMultiProcessor = DeviceModel::kMaxBlocksPerSM;
  p.reservedSharedMemPerBlock = DeviceModel::kReservedSharedPerBlock;
  return p;
}

const cudaDeviceProp& properties() {
  static cudaDeviceProp p = make_properties();
  p.multiProcessorCount = options().sms;  // tests may change the modelled count
  return p;
}

// -------------------------------------------------------------- kernels --

// nvcc's resource usage of every kernel (generated at build time from the
// real sm_90 build, tools/kernel_resources.py): name, registers, static
// shared memory, stack frame.
struct Resources {
  const char* name;
  int registers, static_smem, local_bytes;
};
#include "kernel_resources.inc"

// "kc_steps<float, float, 1, true>" from "... [with auto Kernel = svp::cuda::detail::kc_steps<float, float, 1, true>]"
std::string kernel_name_of(const char* pretty) {
  std::string s(pretty);
  const std::string key = "Kernel = ";
  size_t a = s.find(key);
  a = a == std::string::npos ? 0 : a + key.size();
  size_t b = s.rfind(']');
  if (b == std::string::npos || b < a) b = s.size();
  std::string full = s.substr(a, b - a);
  // drop the namespaces of the function itself (the part before its template arguments)
  const size_t lt = full.find('<');
  const std::string head = full.substr(0, lt);
  const size_t colon = head.rfind("::");
  return colon == std::string::npos ? full : full.substr(colon + 2);
}

std::mutex g_kernels_mutex;
std::map<const void*, std::unique_ptr<KernelInfo>>& kernels() {
  static std::map<const void*, std::unique_ptr<KernelInfo>> m;
  return m;
}

KernelInfo* find_kernel(const void* address) {
  std::lock_guard<std::mutex> lock(g_kernels_mutex);
  auto it = kernels().find(address);
  return it == kernels().end() ? nullptr : it->second.get();
}

}  // namespace

KernelInfo& kernel_info(const void* address, const char* pretty) {
  std::lock_guard<std::mutex> lock(g_kernels_mutex);
  auto& slot = kernels()[address];
  if (!slot) {
    auto k = std::make_unique<KernelInfo>();
    k->address = address;
    const std::string name = kernel_name_of(pretty);
    k->name = strdup(name.c_str());
    for (const Resources& r : kKernelResources)
      if (name == r.name) {
        k->registers = r.registers;
        k->static_smem = r.static_smem;
        k->local_bytes = r.local_bytes;
        k->resources_known = true;
        break;
      }
    if (!k->resources_known) {
      // a kernel the resource table lacks (no nvcc at build time): a
      // register count typical of this project's kernels
      k->registers = 64;
      if (!options().quiet && kKernelResourcesCount > 0)
        fprintf(stderr, "svp_emu: no nvcc resource usage for kernel %s: assuming 64 registers, no static shared memory\n",
                k->name);
    }
    k->max_dynamic_smem = DeviceModel::kSharedPerBlockDefault - k->static_smem;
    slot = std::move(k);
  }
  return *slot;
}

int blocks_per_sm(const KernelInfo& k, int threads, size_t dynamic_smem) {
  cudaOccDeviceProp prop = properties();
  cudaOccFuncAttributes attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.maxThreadsPerBlock = DeviceModel::kMaxThreadsPerBlock;
  attr.numRegs = k.registers;
  attr.sharedSizeBytes = static_cast<size_t>(k.static_smem);
  attr.partitionedGCConfig = PARTITIONED_GC_OFF;
  attr.shmemLimitConfig = FUNC_SHMEM_LIMIT_OPTIN;
  attr.maxDynamicSharedSizeBytes = static_cast<size_t>(k.max_dynamic_smem);
  attr.numBlockBarriers = 1;
  cudaOccDeviceState state;
  cudaOccResult result;
  std::memset(&result, 0, sizeof(result));
  if (cudaOccMaxActiveBlocksPerMultiprocessor(&result, &prop, &attr, &state, threads, dynamic_smem) !=
      CUDA_OCC_SUCCESS)
    return 0;
  return result.activeBlocksPerMultiprocessor;
}

// ------------------------------------------------------------- errors --

namespace {

// The sticky error of the device (a failed kernel), with its report.
std::mutex g_error_mutex;
cudaError_t g_sticky = cudaSuccess;
std::string g_sticky_report;
// A detail for the error a call is about to return (or, with code
// cudaErrorUnknown, for the next error: svp_emu_diagnostic).
cudaError_t g_diagnostic_code = cudaSuccess;
std::string g_diagnostic;
thread_local cudaError_t tls_last_error = cudaSuccess;

void diagnose(cudaError_t code, const std::string& text) {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  g_diagnostic_code = code;
  g_diagnostic = text;
}

cudaError_t sticky() {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  return g_sticky;
}

void set_sticky(cudaError_t e, const std::string& report) {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  if (g_sticky != cudaSuccess) return;
  g_sticky = e;
  g_sticky_report = report;
  if (!options().quiet) fprintf(stderr, "%s\n", report.c_str());
}

// An API call's result: a non-success is also the thread's last error.
cudaError_t result(cudaError_t e) {
  if (e != cudaSuccess) tls_last_error = e;
  return e;
}

// A call that the device's sticky error fails before it does anything.
#define SVP_EMU_STICKY()                    \
  do {                                      \
    const cudaError_t svp_s = sticky();     \
    if (svp_s != cudaSuccess) return result(svp_s); \
  } while (0)

// --------------------------------------------------------------- memory --

std::mutex g_mem_mutex;
std::map<uintptr_t, size_t> g_device_allocs, g_pinned_allocs;

bool is_pinned(const void* p, size_t n) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = g_pinned_allocs.upper_bound(a);
  if (it == g_pinned_allocs.begin()) return false;
  --it;
  return a >= it->first && a + n <= it->first + it->second;
}

// -------------------------------------------------------------- streams --

struct Stream;

// A stream's count of completed ops, shared with the ops of other streams
// that wait for it (a stream may be destroyed before they run)
using Completed = std::shared_ptr<std::atomic<uint64_t>>;

struct Op {
  std::function<void()> work;
  std::vector<std::pair<Completed, uint64_t>> after;  // (a stream's count, the value to wait for)
};

struct Stream {
  bool legacy = false, blocking = true;
  std::mutex m;
  std::condition_variable cv;
  std::deque<Op> queue;
  uint64_t enqueued = 0;
  Completed completed = std::make_shared<std::atomic<uint64_t>>(0);
  bool stop = false;
  std::thread worker;
  void run();
};

std::mutex g_streams_mutex;
std::condition_variable g_progress_cv;  // any stream completed an op
std::mutex g_progress_mutex;
std::vector<Stream*> g_streams;  // every live stream, the legacy one first

Stream* legacy_stream();

void Stream::run() {
  for (;;) {
    Op op;
    {
      std::unique_lock<std::mutex> lock(m);
      cv.wait(lock, [&] { return stop || !queue.empty(); });
      if (queue.empty()) return;
      op = std::move(queue.front());
      queue.pop_front();
    }
    for (auto& dep : op.after) {
      std::unique_lock<std::mutex> lock(g_progress_mutex);
      g_progress_cv.wait(lock, [&] { return dep.first->load() >= dep.second; });
    }
    // after a kernel failure the device runs nothing more (the context is lost)
    if (sticky() == cudaSuccess) op.work();
    {
      std::lock_guard<std::mutex> lock(g_progress_mutex);
      completed->fetch_add(1);
    }
    g_progress_cv.notify_all();
  }
}

Stream* new_stream(bool legacy, bool blocking) {
  Stream* s = new Stream();
  s->legacy = legacy;
  s->blocking = blocking;
  s->worker = std::thread([s] { s->run(); });
  std::lock_guard<std::mutex> lock(g_streams_mutex);
  g_streams.push_back(s);
  return s;
}

Stream* legacy_stream() {
  static Stream* s = new_stream(true, true);
  return s;
}

Stream* stream_of(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy) return legacy_stream();
  if (s == cudaStreamPerThread) return legacy_stream();  // (one host thread issues work here)
  return reinterpret_cast<Stream*>(s);
}

// Enqueues work on a stream with the legacy stream's implicit ordering: work
// on the legacy stream waits for every blocking stream, and work on a
// blocking stream waits for the legacy stream.
void enqueue(cudaStream_t stream, std::function<void()> work) {
  Stream* s = stream_of(stream);
  Op op;
  op.work = std::move(work);
  {
    std::lock_guard<std::mutex> lock(g_streams_mutex);
    if (s->legacy) {
      for (Stream* o : g_streams)
        if (o != s && o->blocking) {
          std::lock_guard<std::mutex> l2(o->m);
          op.after.push_back({o->completed, o->enqueued});
        }
    } else if (s->blocking) {
      Stream* l = legacy_stream();
      std::lock_guard<std::mutex> l2(l->m);
      op.after.push_back({l->completed, l->enqueued});
    }
  }
  {
    std::lock_guard<std::mutex> lock(s->m);
    s->queue.push_back(std::move(op));
    ++s->enqueued;
  }
  s->cv.notify_one();
}

void wait_stream(Stream* s) {
  uint64_t target;
  {
    std::lock_guard<std::mutex> lock(s->m);
    target = s->enqueued;
  }
  std::unique_lock<std::mutex> lock(g_progress_mutex);
  g_progress_cv.wait(lock, [&] { return s->completed->load() >= target; });
}

void wait_all() {
  std::vector<Stream*> all;
  {
    std::lock_guard<std::mutex> lock(g_streams_mutex);
    all = g_streams;
  }
  for (Stream* s : all) wait_stream(s);
}

// --------------------------------------------------------------- events --

struct Event {
  std::atomic<uint64_t> recorded{0}, reached{0};
};

std::atomic<uint64_t> g_launches{0};

}  // namespace

// --------------------------------------------------------------- launch --

cudaError_t launch(KernelInfo& kernel, dim3 grid, dim3 block, size_t dynamic_smem, cudaStream_t stream,
                   bool cooperative, std::unique_ptr<KernelBody> body) {
  SVP_EMU_STICKY();
  const long long threads = 1ll * block.x * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0 ||
      threads > DeviceModel::kMaxThreadsPerBlock || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    diagnose(cudaErrorInvalidConfiguration,
             strf("launch of %s: grid (%u, %u, %u), block (%u, %u, %u) is not a valid configuration",
                  kernel.name, grid.x, grid.y, grid.z, block.x, block.y, block.z));
    return result(cudaErrorInvalidConfiguration);
  }
  if (dynamic_smem > static_cast<size_t>(kernel.max_dynamic_smem) ||
      dynamic_smem + kernel.static_smem > static_cast<size_t>(DeviceModel::kSharedPerBlockOptin)) {
    diagnose(cudaErrorInvalidValue, strf("launch of %s: %zu bytes of dynamic shared memory (+ %d static) exceed the "
                        "kernel's limit of %d dynamic bytes (48 KB in all unless raised with "
                        "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize))",
                        kernel.name, dynamic_smem, kernel.static_smem, kernel.max_dynamic_smem));
    return result(cudaErrorInvalidValue);
  }
  if (1ll * ((kernel.registers + 7) & ~7) * threads > DeviceModel::kRegistersPerBlock) {
    diagnose(cudaErrorLaunchOutOfResources, strf("launch of %s: %lld threads x %d registers exceed the %d registers of a block",
                        kernel.name, threads, kernel.registers, DeviceModel::kRegistersPerBlock));
    return result(cudaErrorLaunchOutOfResources);
  }
  if (cooperative) {
    const long long per_sm = blocks_per_sm(kernel, static_cast<int>(threads), dynamic_smem);
    const long long blocks = 1ll * grid.x * grid.y * grid.z;
    if (blocks > per_sm * options().sms) {
      diagnose(cudaErrorCooperativeLaunchTooLarge, strf("cooperative launch of %s: %lld blocks, but the device holds at most %lld "
                          "resident (%lld per SM x %d SMs)",
                          kernel.name, blocks, per_sm * options().sms, per_sm, options().sms));
      return result(cudaErrorCooperativeLaunchTooLarge);
    }
  }
  auto gl = std::make_shared<GridLaunch>();
  gl->kernel = &kernel;
  gl->grid = grid;
  gl->block = block;
  gl->dynamic_smem = dynamic_smem;
  gl->cooperative = cooperative;
  gl->body = std::move(body);
  gl->launch_no = ++g_launches;
  enqueue(stream, [gl] {
    std::string report;
    const cudaError_t e = run_grid(*gl, &report);
    if (e != cudaSuccess) set_sticky(e, report);
  });
  return cudaSuccess;
}

}  // namespace svp_emu

using namespace svp_emu;

// ------------------------------------------------------ the runtime API --

extern "C" {

cudaError_t cudaGetLastError(void) {
  const cudaError_t s = sticky();
  if (s != cudaSuccess) return s;
  const cudaError_t e = tls_last_error;
  tls_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) {
  const cudaError_t s = sticky();
  return s != cudaSuccess ? s : tls_last_error;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define SVP_EMU_NAME(x) \
  case x: return #x;
    SVP_EMU_NAME(cudaSuccess)
    SVP_EMU_NAME(cudaErrorInvalidValue)
    SVP_EMU_NAME(cudaErrorMemoryAllocation)
    SVP_EMU_NAME(cudaErrorInvalidConfiguration)
    SVP_EMU_NAME(cudaErrorInvalidDevice)
    SVP_EMU_NAME(cudaErrorInvalidResourceHandle)
    SVP_EMU_NAME(cudaErrorNotReady)
    SVP_EMU_NAME(cudaErrorIllegalAddress)
    SVP_EMU_NAME(cudaErrorLaunchOutOfResources)
    SVP_EMU_NAME(cudaErrorLaunchTimeout)
    SVP_EMU_NAME(cudaErrorLaunchFailure)
    SVP_EMU_NAME(cudaErrorCooperativeLaunchTooLarge)
    SVP_EMU_NAME(cudaErrorInvalidDeviceFunction)
    SVP_EMU_NAME(cudaErrorNoDevice)
    SVP_EMU_NAME(cudaErrorNotSupported)
#undef SVP_EMU_NAME
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t e) {
  const char* base;
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: base = "invalid argument"; break;
    case cudaErrorMemoryAllocation: base = "out of memory"; break;
    case cudaErrorInvalidConfiguration: base = "invalid configuration argument"; break;
    case cudaErrorInvalidDevice: base = "invalid device ordinal"; break;
    case cudaErrorInvalidResourceHandle: base = "invalid resource handle"; break;
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: base = "an illegal memory access was encountered"; break;
    case cudaErrorLaunchOutOfResources: base = "too many resources requested for launch"; break;
    case cudaErrorLaunchTimeout: base = "the launch timed out and was terminated"; break;
    case cudaErrorLaunchFailure: base = "unspecified launch failure"; break;
    case cudaErrorCooperativeLaunchTooLarge: base = "too many blocks in cooperative launch"; break;
    case cudaErrorInvalidDeviceFunction: base = "invalid device function"; break;
    case cudaErrorNoDevice: base = "no CUDA-capable device is detected"; break;
    default: base = "unknown error"; break;
  }
  // the emulator's report with it: which kernel, where, why
  static thread_local std::string msg;
  std::lock_guard<std::mutex> lock(g_error_mutex);
  std::string detail;
  if (e == g_sticky && !g_sticky_report.empty()) detail = g_sticky_report;
  else if (!g_diagnostic.empty() && (g_diagnostic_code == e || g_diagnostic_code == cudaErrorUnknown))
    detail = g_diagnostic;
  msg = detail.empty() ? std::string(base) : std::string(base) + " [" + detail + "]";
  return msg.c_str();
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : result(cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return result(cudaErrorInvalidDevice);
  *prop = properties();
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return result(cudaErrorInvalidDevice);
  const cudaDeviceProp& p = properties();
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(p.sharedMemPerBlockOptin); break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = static_cast<int>(p.sharedMemPerMultiprocessor); break;
    case cudaDevAttrMaxRegistersPerBlock: *value = p.regsPerBlock; break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *value = p.regsPerMultiprocessor; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrCooperativeLaunch: *value = 1; break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *value = p.maxBlocksPerMultiProcessor; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    default: return result(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}

// -- memory

cudaError_t cudaMalloc(void** p, size_t size) {
  SVP_EMU_STICKY();
  *p = nullptr;
  if (size == 0) return cudaSuccess;
  // exactly `size` bytes (256-byte aligned, as cudaMalloc's): AddressSanitizer
  // then reports a read one element past the end
  void* m = nullptr;
  if (posix_memalign(&m, 256, size) != 0 || !m) return result(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_device_allocs[reinterpret_cast<uintptr_t>(m)] = size;
  *p = m;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  wait_all();  // cudaFree synchronizes the device
  {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = g_device_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == g_device_allocs.end()) {
      diagnose(cudaErrorInvalidValue, strf("cudaFree(%p): not an address cudaMalloc returned", p));
      return result(cudaErrorInvalidValue);
    }
    g_device_allocs.erase(it);
  }
  free(p);
  return sticky();
}

cudaError_t cudaHostAlloc(void** p, size_t size, unsigned int flags) {
  (void)flags;
  *p = aligned_alloc(4096, (std::max<size_t>(size, 1) + 4095) & ~size_t(4095));
  if (!*p) return result(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_pinned_allocs[reinterpret_cast<uintptr_t>(*p)] = size;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t size) { return cudaHostAlloc(p, size, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  wait_all();
  {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = g_pinned_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == g_pinned_allocs.end()) return result(cudaErrorInvalidValue);
    g_pinned_allocs.erase(it);
  }
  free(p);
  return cudaSuccess;
}

cudaError_t cudaHostGetDevicePointer(void** pdev, void* phost, unsigned int flags) {
  (void)flags;
  *pdev = phost;  // mapped host memory: the same address on the (emulated) device
  return cudaSuccess;
}

// Where an address lives. In the emulation every address but pinned host
// memory is device memory: the tensors the tests give as CUDA tensors are
// host allocations (torch's CPU allocator), which the emulated device reads.
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* ptr) {
  std::memset(attr, 0, sizeof(*attr));
  if (!ptr) return result(cudaErrorInvalidValue);
  const bool host = is_pinned(ptr, 1);
  attr->type = host ? cudaMemoryTypeHost : cudaMemoryTypeDevice;
  attr->device = 0;
  attr->devicePointer = const_cast<void*>(ptr);
  attr->hostPointer = host ? const_cast<void*>(ptr) : nullptr;
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  *total = static_cast<size_t>(DeviceModel::kGlobalMemory);
  *free_bytes = *total;
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  SVP_EMU_STICKY();
  if (count == 0) return cudaSuccess;
  if (!dst || !src) {
    diagnose(cudaErrorInvalidValue, strf("cudaMemcpy of %zu bytes from %p to %p", count, src, dst));
    return result(cudaErrorInvalidValue);
  }
  if (kind == cudaMemcpyHostToDevice && !is_pinned(src, count)) {
    // pageable host memory is staged when the call is made: the caller may
    // reuse its buffer once the call returns
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + count);
    enqueue(stream, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  } else {
    enqueue(stream, [dst, src, count] { std::memmove(dst, src, count); });
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  const cudaError_t e = cudaMemcpyAsync(dst, src, count, kind, nullptr);
  if (e != cudaSuccess) return e;
  wait_stream(legacy_stream());
  return result(sticky());
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t stream) {
  SVP_EMU_STICKY();
  if (count == 0) return cudaSuccess;
  if (!p) return result(cudaErrorInvalidValue);
  enqueue(stream, [p, value, count] { std::memset(p, value, count); });
  return cudaSuccess;
}

cudaError_t cudaMemset(void* p, int value, size_t count) {
  const cudaError_t e = cudaMemsetAsync(p, value, count, nullptr);
  if (e != cudaSuccess) return e;
  wait_stream(legacy_stream());
  return result(sticky());
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  SVP_EMU_STICKY();
  enqueue(stream, [fn, user_data] { fn(user_data); });
  return cudaSuccess;
}

// -- streams and events

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  *s = reinterpret_cast<cudaStream_t>(new_stream(false, !(flags & cudaStreamNonBlocking)));
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return result(cudaErrorInvalidResourceHandle);
  Stream* s = stream_of(stream);
  wait_stream(s);  // its work completes first, as on a device
  {
    std::lock_guard<std::mutex> lock(g_streams_mutex);
    g_streams.erase(std::remove(g_streams.begin(), g_streams.end(), s), g_streams.end());
  }
  {
    std::lock_guard<std::mutex> lock(s->m);
    s->stop = true;
  }
  s->cv.notify_one();
  s->worker.join();
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  wait_stream(stream_of(stream));
  return result(sticky());
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  Stream* s = stream_of(stream);
  std::lock_guard<std::mutex> lock(s->m);
  const cudaError_t st = sticky();
  if (st != cudaSuccess) return st;
  return s->completed->load() >= s->enqueued ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaDeviceSynchronize(void) {
  wait_all();
  return result(sticky());
}

cudaError_t cudaDeviceReset(void) {
  wait_all();
  std::lock_guard<std::mutex> lock(g_error_mutex);
  g_sticky = cudaSuccess;
  g_sticky_report.clear();
  g_diagnostic.clear();
  tls_last_error = cudaSuccess;
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  (void)flags;
  *e = reinterpret_cast<cudaEvent_t>(new Event());
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  if (!e) return result(cudaErrorInvalidResourceHandle);
  Event* ev = reinterpret_cast<Event*>(e);
  // a recorded event may still be reached by its stream: wait for it first
  {
    std::unique_lock<std::mutex> lock(g_progress_mutex);
    g_progress_cv.wait(lock, [&] { return ev->reached.load() >= ev->recorded.load() || sticky() != cudaSuccess; });
  }
  wait_all();
  delete ev;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream) {
  SVP_EMU_STICKY();
  if (!e) return result(cudaErrorInvalidResourceHandle);
  Event* ev = reinterpret_cast<Event*>(e);
  const uint64_t n = ++ev->recorded;
  enqueue(stream, [ev, n] {
    uint64_t cur = ev->reached.load();
    while (cur < n && !ev->reached.compare_exchange_weak(cur, n)) {
    }
  });
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
  const cudaError_t st = sticky();
  if (st != cudaSuccess) return st;
  Event* ev = reinterpret_cast<Event*>(e);
  return ev->reached.load() >= ev->recorded.load() ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  Event* ev = reinterpret_cast<Event*>(e);
  {
    std::unique_lock<std::mutex> lock(g_progress_mutex);
    g_progress_cv.wait(lock, [&] { return ev->reached.load() >= ev->recorded.load() || sticky() != cudaSuccess; });
  }
  return result(sticky());
}

// -- kernels

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  KernelInfo* k = find_kernel(func);
  if (!k) {
    diagnose(cudaErrorInvalidDeviceFunction, "cudaFuncSetAttribute: not a kernel the emulator knows (launch it through svp::cuda::launch)");
    return result(cudaErrorInvalidDeviceFunction);
  }
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value + k->static_smem > DeviceModel::kSharedPerBlockOptin) {
      diagnose(cudaErrorInvalidValue, strf("cudaFuncSetAttribute(%s, MaxDynamicSharedMemorySize, %d): the device allows "
                          "%d bytes in all, %d of them static",
                          k->name, value, DeviceModel::kSharedPerBlockOptin, k->static_smem));
      return result(cudaErrorInvalidValue);
    }
    k->max_dynamic_smem = value;
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  return result(cudaErrorInvalidValue);
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  KernelInfo* k = find_kernel(func);
  if (!k) return result(cudaErrorInvalidDeviceFunction);
  std::memset(attr, 0, sizeof(*attr));
  attr->sharedSizeBytes = static_cast<size_t>(k->static_smem);
  attr->localSizeBytes = static_cast<size_t>(k->local_bytes);
  attr->maxThreadsPerBlock = DeviceModel::kMaxThreadsPerBlock;
  attr->numRegs = k->registers;
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  attr->maxDynamicSharedSizeBytes = k->max_dynamic_smem;
  return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* num_blocks, const void* func, int block_size,
                                                          size_t dynamic_smem) {
  KernelInfo* k = find_kernel(func);
  if (!k) {
    diagnose(cudaErrorInvalidDeviceFunction, "cudaOccupancyMaxActiveBlocksPerMultiprocessor: not a kernel the emulator knows");
    return result(cudaErrorInvalidDeviceFunction);
  }
  *num_blocks = blocks_per_sm(*k, block_size, dynamic_smem);
  return cudaSuccess;
}

cudaError_t cudaLaunchKernel(const void*, dim3, dim3, void**, size_t, cudaStream_t) {
  // the arguments' types are unknown here: every launch goes through the
  // typed entry (svp_emu/launch.h, via csrc/cuda/launch.cuh)
  diagnose(cudaErrorNotSupported, "cudaLaunchKernel: launch through svp::cuda::launch (the emulator needs the kernel's type)");
  return result(cudaErrorNotSupported);
}

cudaError_t cudaLaunchCooperativeKernel(const void*, dim3, dim3, void**, size_t, cudaStream_t) {
  diagnose(cudaErrorNotSupported, "cudaLaunchCooperativeKernel: launch through svp::cuda::launch_cooperative");
  return result(cudaErrorNotSupported);
}

// -- the emulator's own hooks

unsigned long long svp_emu_random_u64(void) { return next_random(); }

void svp_emu_diagnostic(const char* message) {
  diagnose(cudaErrorUnknown, message ? message : "");
  if (!options().quiet && message) fprintf(stderr, "svp_emu: %s\n", message);
}

// Work a stream was running (the CUB or cuBLAS stand-in) found its arguments
// invalid: the device fails as after a faulting kernel.
void svp_emu_execution_fault(int cuda_error, const char* message) {
  set_sticky(static_cast<cudaError_t>(cuda_error), std::string("svp_emu: ") + (message ? message : ""));
}

// The modelled number of multiprocessors (tests run some cases at the
// H200's 132); returns the previous count.
int svp_emu_set_sm_count(int sms) {
  const int before = options().sms;
  if (sms >= 1 && sms <= 132) options().sms = sms;
  return before;
}

int svp_emu_sm_count(void) { return options().sms; }

unsigned long long svp_emu_seed(void) { return options().seed; }

void svp_emu_set_seed(unsigned long long seed) { options().seed = seed; }

}  // extern "C"
