// The grid engine of the CUDA emulation: blocks of fibers on OS threads, one
// runner at a time, barriers and warp collectives checked as the hardware's
// rules demand.
//
// Layout of a running grid:
//   - a *slot* is a resident block position. Each slot is served by an OS
//     thread of its own (SlotThread, from a pool), so that a block-scope
//     thread_local (what __shared__ means here, see svp_emu/device.h) is one
//     object per resident block. A cooperative launch has one slot per block
//     (every block resident at once, as the hardware guarantees); an ordinary
//     launch has a few, which take the blocks in order as they finish.
//   - every thread of a slot's block is a fiber on a stack of its own.
//   - exactly one OS thread runs at a time: it holds the *baton*. It runs its
//     block's fibers, in an order drawn from the grid's seeded random stream,
//     until none can run (all wait at a barrier, a collective or a grid-wide
//     barrier, or sleep), then passes the baton to another slot chosen the
//     same way. So a run is a deterministic function of the seed, and a
//     result that depends on the order of unsynchronised threads or blocks
//     changes with it.
// A violation of the execution model (a barrier reached at different call
// sites or after some threads exited, a collective whose mask names lanes
// that do not arrive, grid.sync() outside a cooperative launch, a deadlock, a
// grid without progress, a fault) fails the launch with a report that names
// the kernel, the block and thread, the call sites and the seed.
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "fiber.h"
#include "runtime.h"
#include "svp_emu/scheduler_api.h"

namespace svp_emu {

std::string strf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[1024];
  const int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < static_cast<int>(sizeof(buf))) return std::string(buf, n > 0 ? n : 0);
  std::string s(static_cast<size_t>(n) + 1, '\0');
  va_start(ap, fmt);
  vsnprintf(&s[0], s.size(), fmt, ap);
  va_end(ap);
  s.resize(static_cast<size_t>(n));
  return s;
}

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- sites --

struct Site {
  const char* file = nullptr;
  int line = 0;
  bool operator==(const Site& o) const {
    return line == o.line && (file == o.file || (file && o.file && std::strcmp(file, o.file) == 0));
  }
  bool operator!=(const Site& o) const { return !(*this == o); }
};

// "kcenter_steps.cuh:300": the file's name without its folders
std::string where(const Site& s) {
  if (!s.file) return "?";
  const char* slash = std::strrchr(s.file, '/');
  return strf("%s:%d", slash ? slash + 1 : s.file, s.line);
}

const char* collective_name(Collective k) {
  switch (k) {
    case Collective::shfl_idx: return "__shfl_sync";
    case Collective::shfl_up: return "__shfl_up_sync";
    case Collective::shfl_down: return "__shfl_down_sync";
    case Collective::shfl_xor: return "__shfl_xor_sync";
    case Collective::ballot: return "__ballot_sync";
    case Collective::any: return "__any_sync";
    case Collective::all: return "__all_sync";
    case Collective::syncwarp: return "__syncwarp";
  }
  return "?";
}

// ------------------------------------------------------------- randomness --

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed = 1) : s(seed ^ 0x9E3779B97F4A7C15ull) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // in [0, n): the high half of a 64 x 64-bit product (no division)
  uint64_t below(uint64_t n) { return n <= 1 ? 0 : static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }
  bool one_in(unsigned n) { return n > 0 && below(n) == 0; }
};

// -------------------------------------------------------------- threads --

enum class State : uint8_t { runnable, blocked, sleeping, done };
enum class Wait : uint8_t { none, syncthreads, collective, grid_sync, sleep };

struct Block;
struct Warp;
struct Grid;
struct Slot;

struct Thread {
  ThreadView view;  // what threadIdx & co read
  FiberContext ctx;
  char* stack_lo = nullptr;
  size_t stack_size = 0;
  void* asan_fake = nullptr;
  Slot* slot = nullptr;
  Block* block = nullptr;
  Warp* warp = nullptr;
  int linear = 0, lane = 0;
  State state = State::runnable;
  Wait wait = Wait::none;
  Site site;
  Collective collective = Collective::syncwarp;
  unsigned collective_mask = 0;
  unsigned long long result = 0;  // of the last collective
  uintptr_t fault_address = 0;    // set by the fault handler
  int fault_signal = 0;
};

struct PendingCollective {
  Collective kind;
  unsigned mask = 0, arrived = 0;
  int width = 32;
  Site site;
  unsigned long long value[32];
  int param[32];
};

struct Warp {
  int index = 0;
  unsigned present = 0;  // lanes that exist (a partial last warp has fewer)
  unsigned exited = 0;
  std::vector<PendingCollective> pending;
  Thread* lanes[32] = {};
  std::vector<Thread*> ready;  // lanes that can run
  bool listed = false;         // in its block's ready_warps
};

struct Block {
  bool active = false;
  uint3 idx{0, 0, 0};
  long long linear = 0;
  int nthreads = 0, nwarps = 0;
  int bar_arrived = 0;
  Site bar_site;
  int exited = 0, done_threads = 0;
  // Threads that can run, by warp: the scheduler draws a warp at random and
  // runs its ready lanes (in random order) before it draws again, so a warp's
  // lanes meet at their collectives without a trip through every other warp
  // (and their stacks stay in cache).
  std::vector<Warp*> ready_warps;
  Warp* current = nullptr;
  int ready_count = 0;
  std::vector<Thread*> sleeping;
  unsigned char* dyn = nullptr;  // dynamic shared memory, followed by a guard zone
  size_t dyn_bytes = 0;
};

// a guard zone after dynamic shared memory, checked when the block ends (an
// AddressSanitizer build has none: ASan sees every access past the end)
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kSharedGuard = 0;
#else
constexpr size_t kSharedGuard = 64;
#endif
constexpr unsigned char kSharedFill = 0xCD, kGuardFill = 0xA7;
constexpr uint64_t kCanary = 0x5356505f454d5521ull;  // "SVP_EMU!"

// An OS thread that serves slots: it owns the fiber stacks and threads of one
// resident block, reused from grid to grid.
struct SlotThread {
  std::thread os;
  std::binary_semaphore assigned{0};
  Grid* grid = nullptr;
  int slot = -1;
  bool quit = false;
  // fibers
  char* stacks = nullptr;
  size_t stack_bytes = 0;
  int capacity = 0;
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  // the scheduler's own context and stack (for AddressSanitizer)
  FiberContext sched;
  Thread* returning = nullptr;  // the fiber that switched back to the scheduler
  void* sched_fake = nullptr;
  const void* sched_stack = nullptr;
  size_t sched_stack_size = 0;
  void main();
  void ensure_fibers(int n);
};

struct Slot {
  int index = 0;
  SlotThread* os = nullptr;
  Block block;
  std::binary_semaphore go{0};
  bool exhausted = false;  // no more blocks for this slot
  bool preempt = false;
};

// ----------------------------------------------------------------- grids --

struct Grid {
  GridLaunch* launch = nullptr;
  KernelInfo* kernel = nullptr;
  bool cooperative = false;
  long long total_blocks = 0, next_block = 0, blocks_done = 0;
  int threads_per_block = 0;
  long long total_threads = 0;
  Rng rng;
  uint64_t seed = 0;
  std::vector<std::unique_ptr<Slot>> slots;
  // grid-wide barrier
  long long grid_arrived = 0, exited_threads = 0;
  Site grid_site;
  std::vector<Thread*> grid_waiters;
  // outcome
  bool finished = false;
  cudaError_t error = cudaSuccess;
  std::string report;
  // liveness: a count of completed barriers, collectives, atomics and exits,
  // and when the liveness check last saw it change
  uint64_t progress_count = 0, progress_seen = 0;
  Clock::time_point last_progress;
  uint64_t switches = 0;
  // what the watchdog (run_grid's thread) reads: the switches so far, and the
  // OS thread holding the baton, which it interrupts when a fiber spins
  // without a switch point for SVP_EMU_HANG_SECONDS
  std::atomic<uint64_t> heartbeat{0};
  std::atomic<pthread_t> runner{};
  // the stream's thread waits for every slot thread to leave
  std::mutex m;
  std::condition_variable cv;
  int slots_running = 0;

  // (SVP_EMU_SLOT_EXIT_PAUSE_US, the emulator's own tests) set by the stream's
  // thread once it has stopped waiting for the slot threads, just before g
  // goes out of scope; a slot thread that still touches g after that is a defect
  std::atomic<bool> stream_left{false};

  void progress() { ++progress_count; }
  void check_still_held() const;
  std::string context(const Thread* t) const;
  std::string state_report() const;
  void fail(cudaError_t code, const std::string& what, const Thread* t);
  void slot_main(Slot& s);
  bool start_next_block(Slot& s);
  void finish_block(Slot& s);
  bool run_until_stuck(Slot& s);
  Slot* choose_next(Slot* from);
  void finish_all();
  void check_liveness();
};

thread_local SlotThread* tls_slot_thread = nullptr;
thread_local Thread* tls_current = nullptr;

void make_runnable(Thread* t) {
  t->state = State::runnable;
  Warp* w = t->warp;
  w->ready.push_back(t);
  Block* b = t->block;
  ++b->ready_count;
  if (!w->listed) {
    w->listed = true;
    b->ready_warps.push_back(w);
  }
}

// The next thread of the block to run: a ready lane of `same` when given
// (a warp handing over to itself), else of the current warp, else of a warp
// drawn at random (now and then even when the current one has lanes ready,
// so that warps interleave between barriers too). Null: none is ready.
Thread* pick(Block& b, Rng& rng, Warp* same) {
  if (b.ready_count == 0) return nullptr;
  Warp* w = same;
  if (w) {
    if (w->ready.empty()) return nullptr;
  } else {
    w = b.current;
    if (!w || w->ready.empty() || rng.one_in(8)) {
      for (;;) {
        const size_t k = rng.below(b.ready_warps.size());
        Warp* c = b.ready_warps[k];
        if (!c->ready.empty()) {
          w = c;
          break;
        }
        c->listed = false;  // drained since it was listed
        b.ready_warps[k] = b.ready_warps.back();
        b.ready_warps.pop_back();
      }
      b.current = w;
    }
  }
  const size_t k = rng.below(w->ready.size());
  Thread* t = w->ready[k];
  w->ready[k] = w->ready.back();
  w->ready.pop_back();
  --b.ready_count;
  return t;
}

// ----------------------------------------------------------- the pool --

std::mutex& pool_mutex() {
  static std::mutex m;
  return m;
}
std::vector<SlotThread*>& idle_threads() {
  static std::vector<SlotThread*> v;
  return v;
}

void install_fault_handler();

SlotThread* take_slot_thread() {
  {
    std::lock_guard<std::mutex> lock(pool_mutex());
    if (!idle_threads().empty()) {
      SlotThread* t = idle_threads().back();
      idle_threads().pop_back();
      return t;
    }
  }
  // never freed: slot threads live as long as the process (like a GPU's SMs)
  SlotThread* t = new SlotThread();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1 << 20);
  pthread_t tid;
  const int rc = pthread_create(
      &tid, &attr, [](void* self) -> void* {
        static_cast<SlotThread*>(self)->main();
        return nullptr;
      },
      t);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    fprintf(stderr, "svp_emu: cannot start a slot thread (%s)\n", strerror(rc));
    abort();
  }
  pthread_detach(tid);
  return t;
}

void give_back(SlotThread* t) {
  std::lock_guard<std::mutex> lock(pool_mutex());
  idle_threads().push_back(t);
}

void SlotThread::ensure_fibers(int n) {
  if (n <= capacity && stack_bytes == options().stack_bytes) return;
  if (stacks) munmap(stacks, stack_bytes * static_cast<size_t>(capacity) + 4096);
  stack_bytes = options().stack_bytes;
  capacity = std::max(n, 256);
  const size_t total = stack_bytes * static_cast<size_t>(capacity) + 4096;
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "svp_emu: cannot map %zu bytes of fiber stacks\n", total);
    abort();
  }
  // a guard page below the lowest stack; between stacks, canaries (a guard
  // page each would need a mapping each, past the kernel's map count limit)
  mprotect(p, 4096, PROT_NONE);
  stacks = static_cast<char*>(p) + 4096;
  threads.assign(static_cast<size_t>(capacity), Thread());
  warps.assign(static_cast<size_t>((capacity + 31) / 32), Warp());
}

void SlotThread::main() {
  tls_slot_thread = this;
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr = nullptr;
    size_t size = 0;
    pthread_attr_getstack(&attr, &addr, &size);
    sched_stack = addr;
    sched_stack_size = size;
    pthread_attr_destroy(&attr);
  }
  // the fault handler runs on a stack of its own (a fiber's stack may be what overflowed)
  stack_t ss;
  ss.ss_size = 64 << 10;
  ss.ss_sp = malloc(ss.ss_size);
  ss.ss_flags = 0;
  sigaltstack(&ss, nullptr);
  for (;;) {
    assigned.acquire();
    if (quit) return;
    Grid* g = grid;
    Slot& s = *g->slots[static_cast<size_t>(slot)];
    g->slot_main(s);
    grid = nullptr;
    slot = -1;
    give_back(this);
    // counted out and the stream's thread woken under the lock: once it is
    // released that thread may return from run_grid, and g (on its stack) is
    // gone (woken after the unlock, a late notify_all wrote into whatever the
    // stream's thread had put there since: a crash in a distributed test)
    std::lock_guard<std::mutex> lock(g->m);
    --g->slots_running;
    g->check_still_held();
    g->cv.notify_all();
  }
}

// -------------------------------------------------------- fiber control --

void fiber_entry(void* arg);

bool stack_intact(const Thread* t) {
  const uint64_t* c = reinterpret_cast<const uint64_t*>(t->stack_lo);
  return c[0] == kCanary && c[1] == kCanary;
}

// From a fiber back to its slot's scheduler. `dying`: the fiber will never
// be resumed (AddressSanitizer forgets its fake stack).
void to_scheduler(Thread* t, bool dying) {
  SlotThread* st = t->slot->os;
  st->returning = t;
  asan_start_switch(dying ? nullptr : &t->asan_fake, st->sched_stack, st->sched_stack_size);
  switch_context(&t->ctx, &st->sched);
  asan_finish_switch(t->asan_fake, nullptr, nullptr);
}

Grid& grid_of(const Thread* t);

// Away from t, which has set its new state: straight to another ready lane
// of its warp when there is one (the lanes of a collective hand over to each
// other without the scheduler), else to the scheduler.
void leave(Thread* t, bool dying) {
  Grid& g = grid_of(t);
  Thread* next = g.error == cudaSuccess ? pick(*t->block, g.rng, t->warp) : nullptr;
  if (!next) return to_scheduler(t, dying);
  g.heartbeat.store(++g.switches, std::memory_order_relaxed);
  tls_current = next;
  asan_start_switch(dying ? nullptr : &t->asan_fake, next->stack_lo, next->stack_size);
  switch_context(&t->ctx, &next->ctx);
  asan_finish_switch(t->asan_fake, nullptr, nullptr);
}


Thread* current_thread(const char* what, const char* file, int line) {
  Thread* t = tls_current;
  if (!t) outside_kernel(what, file, line);
  return t;
}

Grid& grid_of(const Thread* t) { return *t->slot->os->grid; }

// Ends the calling fiber's launch with an error (never returns).
[[noreturn]] void fail_here(Thread* t, cudaError_t code, const std::string& what) {
  Grid& g = grid_of(t);
  g.fail(code, what, t);
  t->state = State::done;
  to_scheduler(t, true);
  __builtin_unreachable();
}

std::string Grid::context(const Thread* t) const {
  std::string s = strf("kernel %s (grid %u x %u x %u, block %u x %u x %u%s)", kernel->name,
                       launch->grid.x, launch->grid.y, launch->grid.z, launch->block.x, launch->block.y,
                       launch->block.z, cooperative ? ", cooperative" : "");
  if (t)
    s += strf(", block (%u,%u,%u) thread (%u,%u,%u), warp %d lane %d", t->view.block_idx.x,
              t->view.block_idx.y, t->view.block_idx.z, t->view.thread_idx.x, t->view.thread_idx.y,
              t->view.thread_idx.z, t->warp->index, t->lane);
  return s;
}

void Grid::fail(cudaError_t code, const std::string& what, const Thread* t) {
  if (error != cudaSuccess) return;  // the first failure is the one to see
  error = code;
  report = strf("svp_emu: %s\n  in %s\n  emulator seed %llu, launch %llu (SVP_EMU_SEED=%llu "
                "replays this order)",
                what.c_str(), context(t).c_str(), (unsigned long long)options().seed,
                (unsigned long long)launch->launch_no, (unsigned long long)options().seed);
}

// Where every unfinished warp waits, grouped by lanes in the same state.
std::string Grid::state_report() const {
  std::string out;
  int lines = 0, more = 0;
  for (const auto& sp : slots) {
    const Slot& s = *sp;
    if (!s.block.active) continue;
    const SlotThread* st = s.os;
    for (int w = 0; w < s.block.nwarps; ++w) {
      const Warp& wp = st->warps[static_cast<size_t>(w)];
      // runs of lanes with the same description
      std::string prev;
      int first = -1;
      auto flush = [&](int last) {
        if (first < 0 || prev.empty()) return;
        if (lines < 24) {
          out += strf("\n    block (%u,%u,%u) warp %d lanes %d-%d: %s", s.block.idx.x, s.block.idx.y,
                      s.block.idx.z, w, first, last, prev.c_str());
          ++lines;
        } else {
          ++more;
        }
      };
      for (int l = 0; l <= 32; ++l) {
        std::string d;
        if (l < 32 && (wp.present >> l & 1)) {
          const Thread* t = wp.lanes[l];
          switch (t->state) {
            case State::done: d = "exited"; break;
            case State::runnable: d = "ready to run"; break;
            case State::sleeping: d = "sleeping (spin loop) at " + where(t->site); break;
            case State::blocked:
              if (t->wait == Wait::syncthreads) d = "waiting at __syncthreads " + where(t->site);
              else if (t->wait == Wait::grid_sync) d = "waiting at grid.sync() " + where(t->site);
              else
                d = strf("waiting at %s %s (mask 0x%08x)", collective_name(t->collective),
                         where(t->site).c_str(), t->collective_mask);
              break;
          }
        }
        if (d != prev) {
          flush(l - 1);
          prev = d;
          first = l;
        }
      }
    }
  }
  if (more) out += strf("\n    ... and %d more", more);
  return out;
}

// ------------------------------------------------------------ the engine --

bool Grid::start_next_block(Slot& s) {
  if (s.exhausted) return false;
  long long b;
  if (cooperative) {
    b = s.index;
    s.exhausted = true;  // one block per slot, all resident
  } else {
    if (next_block >= total_blocks) {
      s.exhausted = true;
      return false;
    }
    b = next_block++;
  }
  const dim3 gd = launch->grid, bd = launch->block;
  Block& blk = s.block;
  blk = Block();
  blk.active = true;
  blk.linear = b;
  blk.idx = uint3{static_cast<unsigned>(b % gd.x), static_cast<unsigned>((b / gd.x) % gd.y),
                  static_cast<unsigned>(b / (1ll * gd.x * gd.y))};
  blk.nthreads = threads_per_block;
  blk.nwarps = (threads_per_block + 31) / 32;
  SlotThread* st = s.os;
  st->ensure_fibers(threads_per_block);
  if (launch->dynamic_smem > 0) {
    blk.dyn_bytes = launch->dynamic_smem;
    void* mem = nullptr;
    if (posix_memalign(&mem, 128, blk.dyn_bytes + kSharedGuard) != 0) {
      fprintf(stderr, "svp_emu: cannot allocate %zu bytes of shared memory\n", blk.dyn_bytes);
      abort();
    }
    blk.dyn = static_cast<unsigned char*>(mem);
    // shared memory starts undefined: a pattern, so that reading it before
    // writing gives garbage rather than a lucky zero
    std::memset(blk.dyn, kSharedFill, blk.dyn_bytes);
    std::memset(blk.dyn + blk.dyn_bytes, kGuardFill, kSharedGuard);
  }
  for (int w = 0; w < blk.nwarps; ++w) {
    Warp& wp = st->warps[static_cast<size_t>(w)];
    wp = Warp();
    wp.index = w;
  }
  blk.ready_warps.reserve(static_cast<size_t>(blk.nwarps));
  for (int i = 0; i < threads_per_block; ++i) {
    Thread& t = st->threads[static_cast<size_t>(i)];
    t = Thread();
    t.view.thread_idx = uint3{static_cast<unsigned>(i % bd.x), static_cast<unsigned>((i / bd.x) % bd.y),
                              static_cast<unsigned>(i / (bd.x * bd.y))};
    t.view.block_idx = blk.idx;
    t.view.block_dim = bd;
    t.view.grid_dim = gd;
    t.slot = &s;
    t.block = &blk;
    t.linear = i;
    t.lane = i & 31;
    t.warp = &st->warps[static_cast<size_t>(i >> 5)];
    t.warp->present |= 1u << t.lane;
    t.warp->lanes[t.lane] = &t;
    t.stack_lo = st->stacks + static_cast<size_t>(i) * st->stack_bytes;
    t.stack_size = st->stack_bytes;
    uint64_t* canary = reinterpret_cast<uint64_t*>(t.stack_lo);
    canary[0] = canary[1] = kCanary;
    // the stacks' tops 64 KB apart would all fall in the same cache sets:
    // each starts a different number of cache lines below its top
    make_context(&t.ctx, t.stack_lo, t.stack_size - static_cast<size_t>((i * 7) % 64) * 64, fiber_entry, &t);
    make_runnable(&t);
  }
  progress();
  return true;
}

void Grid::finish_block(Slot& s) {
  Block& blk = s.block;
  if (blk.dyn) {
    for (size_t i = 0; i < kSharedGuard; ++i)
      if (blk.dyn[blk.dyn_bytes + i] != kGuardFill) {
        fail(cudaErrorIllegalAddress,
             strf("block (%u,%u,%u) wrote past the end of its dynamic shared memory (%zu bytes as "
                  "launched, byte %zu after the end changed)",
                  blk.idx.x, blk.idx.y, blk.idx.z, blk.dyn_bytes, i),
             nullptr);
        break;
      }
    free(blk.dyn);
    blk.dyn = nullptr;
  }
  blk.active = false;
  ++blocks_done;
  progress();
}

// Runs the slot's fibers until none can run; returns false when the slot
// has nothing left to do.
bool Grid::run_until_stuck(Slot& s) {
  SlotThread* st = s.os;
  for (;;) {
    if (error != cudaSuccess) return false;
    Block& blk = s.block;
    if (!blk.active) {
      if (!start_next_block(s)) return false;
      continue;
    }
    if (blk.ready_count == 0) {
      if (blk.done_threads == blk.nthreads) {
        finish_block(s);
        // the next block may run on another slot: blocks of an ordinary
        // launch interleave as they would on several multiprocessors
        if (!cooperative && slots.size() > 1) return true;
        continue;
      }
      return true;  // waiting for other blocks, or only sleepers left
    }
    Thread* t = pick(blk, rng, nullptr);
    // run it (and the lanes it hands over to) until one waits, sleeps,
    // exits or is switched out with nothing of its warp ready
    tls_current = t;
    asan_start_switch(&st->sched_fake, t->stack_lo, t->stack_size);
    switch_context(&st->sched, &t->ctx);
    asan_finish_switch(st->sched_fake, nullptr, nullptr);
    tls_current = nullptr;
    t = st->returning;
    if (!stack_intact(t) && error == cudaSuccess)
      fail(cudaErrorIllegalAddress,
           strf("the stack of an emulated thread overflowed (%zu KB; set SVP_EMU_STACK_KB higher)",
                t->stack_size >> 10),
           t);
    heartbeat.store(++switches, std::memory_order_relaxed);
    if ((switches & 4095) == 0) check_liveness();
    if (s.preempt) {
      s.preempt = false;
      return true;
    }
  }
}

void Grid::check_liveness() {
  const Clock::time_point now = Clock::now();
  if (progress_count != progress_seen) {
    progress_seen = progress_count;
    last_progress = now;
    return;
  }
  const double idle = std::chrono::duration<double>(now - last_progress).count();
  if (idle > options().hang_seconds && error == cudaSuccess)
    fail(cudaErrorLaunchTimeout,
         strf("no progress for %.0f s (no barrier, collective, atomic or thread exit completed): "
              "threads spin waiting on each other%s",
              idle, state_report().c_str()),
         nullptr);
}

// The next slot to hold the baton: one whose block has threads ready to run;
// failing that, one with sleepers (a spin round); none: the grid has ended,
// or it deadlocked.
Slot* Grid::choose_next(Slot* from) {
  (void)from;
  if (error != cudaSuccess) return nullptr;
  std::vector<Slot*> ready, sleepy;
  for (auto& sp : slots) {
    Slot& s = *sp;
    if (s.block.active) {
      if (s.block.ready_count > 0) ready.push_back(&s);
      else if (!s.block.sleeping.empty()) sleepy.push_back(&s);
    } else if (!s.exhausted && (cooperative || next_block < total_blocks)) {
      ready.push_back(&s);
    }
  }
  if (!ready.empty()) return ready[rng.below(ready.size())];
  if (!sleepy.empty()) {
    check_liveness();
    if (error != cudaSuccess) return nullptr;
    Slot* s = sleepy[rng.below(sleepy.size())];
    // a spin round: its sleepers run again
    for (Thread* t : s->block.sleeping) make_runnable(t);
    s->block.sleeping.clear();
    return s;
  }
  if (blocks_done < total_blocks) {
    fail(cudaErrorLaunchFailure,
         strf("deadlock: no thread of the grid can run (%lld of %lld blocks finished)%s", blocks_done,
              total_blocks, state_report().c_str()),
         nullptr);
  }
  return nullptr;
}

void Grid::finish_all() {
  finished = true;
  for (auto& sp : slots) sp->go.release();
}

void Grid::slot_main(Slot& s) {
  for (;;) {
    s.go.acquire();
    if (finished) return;
    runner.store(pthread_self(), std::memory_order_relaxed);
    for (;;) {
      run_until_stuck(s);
      Slot* next = choose_next(&s);
      if (!next) {
        finish_all();
        return;
      }
      if (next == &s) continue;
      next->go.release();
      break;
    }
  }
}

// ------------------------------------------------------------ the fibers --

[[noreturn]] void thread_exit(Thread* t);

void fiber_entry(void* arg) {
  Thread* t = static_cast<Thread*>(arg);
  asan_finish_switch(nullptr, nullptr, nullptr);
  grid_of(t).launch->body->run();
  thread_exit(t);
}

void thread_exit(Thread* t) {
  Grid& g = grid_of(t);
  Block& blk = *t->block;
  Warp& w = *t->warp;
  t->state = State::done;
  ++blk.done_threads;
  ++blk.exited;
  ++g.exited_threads;
  w.exited |= 1u << t->lane;
  g.progress();
  if (blk.bar_arrived > 0)
    fail_here(t, cudaErrorLaunchFailure,
              strf("a thread exited while %d threads of its block wait at __syncthreads %s (a block "
                   "barrier must be reached by every thread of the block)",
                   blk.bar_arrived, where(blk.bar_site).c_str()));
  for (const PendingCollective& c : w.pending)
    if (c.mask >> t->lane & 1)
      fail_here(t, cudaErrorLaunchFailure,
                strf("a thread exited while lanes of its warp wait for it at %s %s (mask 0x%08x)",
                     collective_name(c.kind), where(c.site).c_str(), c.mask));
  if (g.grid_arrived > 0)
    fail_here(t, cudaErrorLaunchFailure,
              strf("a thread exited while %lld threads wait at grid.sync() %s (every thread of the "
                   "grid must reach it)",
                   g.grid_arrived, where(g.grid_site).c_str()));
  leave(t, true);
  __builtin_unreachable();
}

void block_on(Thread* t, Wait wait, const Site& site) {
  t->state = State::blocked;
  t->wait = wait;
  t->site = site;
  leave(t, false);
  t->wait = Wait::none;
}


}  // namespace

// ----------------------------------------------- the device language API --

ThreadView* current_view() { return tls_current ? &tls_current->view : nullptr; }

void outside_kernel(const char* what, const char* file, int line) {
  fprintf(stderr, "svp_emu: %s used outside a kernel, at %s:%d\n", what, file, line);
  abort();
}

void syncthreads(const char* file, int line) {
  Thread* t = current_thread("__syncthreads", file, line);
  Block& blk = *t->block;
  const Site site{file, line};
  if (blk.exited > 0)
    fail_here(t, cudaErrorLaunchFailure,
              strf("__syncthreads %s reached after %d threads of the block exited (a block barrier "
                   "must be reached by every thread of the block)",
                   where(site).c_str(), blk.exited));
  if (blk.bar_arrived == 0) {
    blk.bar_site = site;
  } else if (site != blk.bar_site) {
    fail_here(t, cudaErrorLaunchFailure,
              strf("__syncthreads reached at two call sites: %s, while %d threads of the block wait "
                   "at %s",
                   where(site).c_str(), blk.bar_arrived, where(blk.bar_site).c_str()));
  }
  if (++blk.bar_arrived == blk.nthreads) {
    blk.bar_arrived = 0;
    SlotThread* st = t->slot->os;
    for (int i = 0; i < blk.nthreads; ++i) {
      Thread* o = &st->threads[static_cast<size_t>(i)];
      if (o != t && o->state == State::blocked && o->wait == Wait::syncthreads) make_runnable(o);
    }
    grid_of(t).progress();
    return;
  }
  block_on(t, Wait::syncthreads, site);
}

unsigned long long warp_collective(Collective kind, unsigned mask, unsigned long long value, int param,
                                   int width, const char* file, int line) {
  Thread* t = current_thread(collective_name(kind), file, line);
  Warp& w = *t->warp;
  const int lane = t->lane;
  const Site site{file, line};
#define name collective_name(kind)
  if (!(mask >> lane & 1))
    fail_here(t, cudaErrorLaunchFailure,
              strf("%s %s called by lane %d with mask 0x%08x, which does not include it", name,
                   where(site).c_str(), lane, mask));
  if (width < 1 || width > 32 || (width & (width - 1)))
    fail_here(t, cudaErrorLaunchFailure,
              strf("%s %s with width %d (a power of two up to 32)", name, where(site).c_str(), width));
  if (mask & ~w.present)
    fail_here(t, cudaErrorLaunchFailure,
              strf("%s %s with mask 0x%08x names lanes that do not exist (lanes 0x%08x)", name,
                   where(site).c_str(), mask, w.present));
  if (mask & w.exited)
    fail_here(t, cudaErrorLaunchFailure,
              strf("%s %s with mask 0x%08x names lanes that have exited (0x%08x)", name,
                   where(site).c_str(), mask, mask & w.exited));
  // The instance this lane joins: the pending one with its mask, kind and
  // call site. Lanes of overlapping masks may be at different collectives
  // for a while (on sm_70 and later a lane waits at its collective until
  // every lane of the mask arrives there; the others run on, e.g. a row
  // group finishing its loop before its neighbour), so only a deadlock makes
  // that an error. Two call sites with the same mask are: the lanes would
  // exchange values of two different instructions. (__syncwarp may be met
  // at different calls.)
  PendingCollective* c = nullptr;
  for (PendingCollective& p : w.pending) {
    if (p.mask != mask || p.kind != kind) continue;
    if (kind == Collective::syncwarp || p.site == site) {
      c = &p;
      break;
    }
    fail_here(t, cudaErrorLaunchFailure,
              strf("lane %d calls %s %s with mask 0x%08x while lanes 0x%08x wait at %s %s with the "
                   "same mask (the lanes of a mask must all execute the same collective)",
                   lane, name, where(site).c_str(), mask, p.arrived, collective_name(p.kind),
                   where(p.site).c_str()));
  }
  if (c && c->width != width)
    fail_here(t, cudaErrorLaunchFailure,
              strf("%s %s: lane %d passes width %d, lanes 0x%08x passed %d", name, where(site).c_str(), lane,
                   width, c->arrived, c->width));
  if (!c) {
    w.pending.emplace_back();
    c = &w.pending.back();
    c->kind = kind;
    c->mask = mask;
    c->width = width;
    c->site = site;
  }
  c->value[lane] = value;
  c->param[lane] = param;
  c->arrived |= 1u << lane;
  if (c->arrived != mask) {
    t->collective = kind;
    t->collective_mask = mask;
    block_on(t, Wait::collective, site);
    return t->result;
  }
  // the last lane: every lane's result
  unsigned votes = 0;
  for (int l = 0; l < 32; ++l)
    if ((mask >> l & 1) && c->value[l]) votes |= 1u << l;
  for (int l = 0; l < 32; ++l) {
    if (!(mask >> l & 1)) continue;
    unsigned long long r = 0;
    const int seg = l & ~(c->width - 1);
    int src = l;
    switch (kind) {
      case Collective::shfl_idx: src = seg + (c->param[l] & (c->width - 1)); break;
      case Collective::shfl_up: src = l - c->param[l] >= seg ? l - c->param[l] : l; break;
      case Collective::shfl_down: src = l + c->param[l] < seg + c->width ? l + c->param[l] : l; break;
      case Collective::shfl_xor: {
        const int x = l ^ c->param[l];
        src = (x >= seg && x < seg + c->width) ? x : l;
        break;
      }
      default: break;
    }
    switch (kind) {
      case Collective::shfl_idx:
      case Collective::shfl_up:
      case Collective::shfl_down:
      case Collective::shfl_xor:
        if (!(mask >> src & 1))
          fail_here(t, cudaErrorLaunchFailure,
                    strf("%s %s: lane %d reads lane %d, which is not in the mask 0x%08x (its value "
                         "is undefined on the device)",
                         name, where(site).c_str(), l, src, mask));
        r = c->value[src];
        break;
      case Collective::ballot: r = votes; break;
      case Collective::any: r = votes != 0; break;
      case Collective::all: r = votes == mask; break;
      case Collective::syncwarp: break;
    }
    w.lanes[l]->result = r;
  }
  for (int l = 0; l < 32; ++l)
    if ((mask >> l & 1) && l != lane) make_runnable(w.lanes[l]);
  w.pending.erase(w.pending.begin() + (c - w.pending.data()));
  grid_of(t).progress();
  return t->result;
#undef name
}

void grid_sync(const char* file, int line) {
  Thread* t = current_thread("grid.sync()", file, line);
  Grid& g = grid_of(t);
  const Site site{file, line};
  if (!g.cooperative)
    fail_here(t, cudaErrorLaunchFailure,
              strf("grid.sync() %s in a kernel not launched with cudaLaunchCooperativeKernel (its "
                   "blocks need not be resident together: the barrier may never complete)",
                   where(site).c_str()));
  if (g.exited_threads > 0)
    fail_here(t, cudaErrorLaunchFailure,
              strf("grid.sync() %s reached after %lld threads of the grid exited (every thread of "
                   "the grid must reach it)",
                   where(site).c_str(), g.exited_threads));
  if (g.grid_arrived == 0) {
    g.grid_site = site;
  } else if (site != g.grid_site) {
    fail_here(t, cudaErrorLaunchFailure,
              strf("grid.sync() reached at two call sites: %s, while %lld threads wait at %s",
                   where(site).c_str(), g.grid_arrived, where(g.grid_site).c_str()));
  }
  if (++g.grid_arrived == g.total_threads) {
    g.grid_arrived = 0;
    for (Thread* o : g.grid_waiters) make_runnable(o);
    g.grid_waiters.clear();
    g.progress();
    return;
  }
  g.grid_waiters.push_back(t);
  block_on(t, Wait::grid_sync, site);
}

bool launched_cooperatively() {
  Thread* t = current_thread("cooperative_groups", __FILE__, __LINE__);
  return grid_of(t).cooperative;
}

// A point where another thread (1 in switch_odds) or another block (1 in
// preempt_odds) may run: atomics and fences, the places where the order of
// threads can show in a result.
void atomic_point(const char* file, int line) {
  Thread* t = tls_current;
  if (!t) outside_kernel("an atomic", file, line);  // device-only: nvcc refuses it in host code
  Grid& g = grid_of(t);
  g.progress();
  if (g.rng.one_in(options().preempt_odds) && g.slots.size() > 1) t->slot->preempt = true;
  if (g.rng.one_in(options().switch_odds) || t->slot->preempt) {
    t->site = Site{file, line};
    make_runnable(t);
    to_scheduler(t, false);
  }
}

void fence(const char* file, int line) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  atomic_point(file, line);
}

void sleep_yield(unsigned ns, const char* file, int line) {
  (void)ns;
  Thread* t = current_thread("__nanosleep", file, line);
  t->state = State::sleeping;
  t->site = Site{file, line};
  t->block->sleeping.push_back(t);
  to_scheduler(t, false);
}

unsigned char* dynamic_shared_memory() {
  Thread* t = current_thread("dynamic shared memory", __FILE__, __LINE__);
  return t->block->dyn;
}

// ------------------------------------------------------------ faults --

namespace {

struct sigaction g_old_segv, g_old_bus;
// the watchdog's signal to a slot thread whose fiber spins (SIGRTMIN + 7:
// one no library here uses)
const int kSpinSignal = SIGRTMIN + 7;

// Where a faulting fiber resumes (on its own stack, reset): it reports the
// fault and ends its launch.
[[noreturn]] void fault_landing(Thread* t) {
  asan_forget_stack(t->stack_lo, t->stack_size);  // the frames the fault abandoned
  fail_here(t, cudaErrorIllegalAddress,
            strf("an illegal memory access (%s at address 0x%llx): a device pointer out of bounds "
                 "or null",
                 t->fault_signal == SIGBUS ? "SIGBUS" : "SIGSEGV", (unsigned long long)t->fault_address));
}

// Where a fiber that spun too long without a switch point resumes: it
// reports where it was (its function) and ends its launch.
[[noreturn]] void spin_landing(Thread* t) {
  asan_forget_stack(t->stack_lo, t->stack_size);  // the frames the signal abandoned
  Dl_info info;
  const char* fn = dladdr(reinterpret_cast<void*>(t->fault_address), &info) && info.dli_sname ? info.dli_sname : "?";
  fail_here(t, cudaErrorLaunchTimeout,
            strf("a thread ran %.0f s without reaching a barrier, a collective, an atomic, a fence "
                 "or __nanosleep (a spin loop the emulator cannot switch out of: add __nanosleep "
                 "to it); it was in %s",
                 options().hang_seconds, fn));
}

void on_spin_timeout(int, siginfo_t*, void* uctx) {
  Thread* t = tls_current;
  if (!t) return;  // the scheduler itself: it checks liveness on its own
#if defined(__x86_64__)
  ucontext_t* uc = static_cast<ucontext_t*>(uctx);
  t->fault_address = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  const uintptr_t top = (reinterpret_cast<uintptr_t>(t->stack_lo) + t->stack_size - 256) & ~uintptr_t(15);
  uc->uc_mcontext.gregs[REG_RSP] = static_cast<greg_t>(top - 8);
  uc->uc_mcontext.gregs[REG_RIP] = reinterpret_cast<greg_t>(&spin_landing);
  uc->uc_mcontext.gregs[REG_RDI] = reinterpret_cast<greg_t>(t);
#else
  (void)uctx;
#endif
}

void on_fault(int sig, siginfo_t* info, void* uctx) {
  Thread* t = tls_current;
  if (t) {
    t->fault_signal = sig;
    t->fault_address = reinterpret_cast<uintptr_t>(info->si_addr);
#if defined(__x86_64__)
    ucontext_t* uc = static_cast<ucontext_t*>(uctx);
    const uintptr_t top = (reinterpret_cast<uintptr_t>(t->stack_lo) + t->stack_size - 256) & ~uintptr_t(15);
    uc->uc_mcontext.gregs[REG_RSP] = static_cast<greg_t>(top - 8);  // as after a call
    uc->uc_mcontext.gregs[REG_RIP] = reinterpret_cast<greg_t>(&fault_landing);
    uc->uc_mcontext.gregs[REG_RDI] = reinterpret_cast<greg_t>(t);
    return;
#endif
  }
  // not an emulated thread: whoever handled it before
  const struct sigaction& old = sig == SIGBUS ? g_old_bus : g_old_segv;
  if (old.sa_flags & SA_SIGINFO) {
    if (old.sa_sigaction) return old.sa_sigaction(sig, info, uctx);
  } else if (old.sa_handler != SIG_IGN && old.sa_handler != SIG_DFL && old.sa_handler) {
    return old.sa_handler(sig);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

namespace {
void install_fault_handler() {
  static std::once_flag spin_once;
  std::call_once(spin_once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_spin_timeout;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(kSpinSignal, &sa, nullptr);
  });
#if defined(__SANITIZE_ADDRESS__)
  return;  // AddressSanitizer reports faults itself, with the stack
#else
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    sigaction(SIGBUS, &sa, &g_old_bus);
  });
#endif
}
}  // namespace

// ----------------------------------------------------------- run a grid --

// A slot thread about to touch g for the last time (the emulator's own test,
// SVP_EMU_SLOT_EXIT_PAUSE_US): it pauses, then g must still be the stream
// thread's (g lives on that thread's stack and is gone once it moves on).
void Grid::check_still_held() const {
  if (!options().slot_exit_pause_us) return;
  std::this_thread::sleep_for(std::chrono::microseconds(options().slot_exit_pause_us));
  if (stream_left.load()) {
    fprintf(stderr, "svp_emu: a slot thread touched its grid after the stream's thread had left it\n");
    abort();
  }
}

cudaError_t run_grid(GridLaunch& launch, std::string* detail) {
  install_fault_handler();
  Grid g;
  g.launch = &launch;
  g.kernel = launch.kernel;
  g.cooperative = launch.cooperative;
  g.total_blocks = 1ll * launch.grid.x * launch.grid.y * launch.grid.z;
  g.threads_per_block = static_cast<int>(launch.block.x * launch.block.y * launch.block.z);
  g.total_threads = g.total_blocks * g.threads_per_block;
  g.seed = options().seed * 0x100000001B3ull + launch.launch_no;
  g.rng = Rng(g.seed);
  g.last_progress = Clock::now();
  long long resident = g.total_blocks;
  if (!g.cooperative)
    resident = std::min<long long>(
        resident, std::max(1, std::min(options().max_resident,
                                       options().sms * std::max(1, blocks_per_sm(*launch.kernel,
                                                                                g.threads_per_block,
                                                                                launch.dynamic_smem)))));
  std::vector<SlotThread*> threads;
  for (long long i = 0; i < resident; ++i) {
    auto s = std::make_unique<Slot>();
    s->index = static_cast<int>(i);
    s->os = take_slot_thread();
    threads.push_back(s->os);
    g.slots.push_back(std::move(s));
  }
  g.slots_running = static_cast<int>(resident);
  for (long long i = 0; i < resident; ++i) {
    SlotThread* st = threads[static_cast<size_t>(i)];
    st->grid = &g;
    st->slot = static_cast<int>(i);
    st->assigned.release();
  }
  // the baton to a first slot
  g.slots[g.rng.below(g.slots.size())]->go.release();
  {
    // the watchdog: a grid whose fibers make no switch for the hang limit has
    // a fiber spinning with nothing to switch at: interrupt it
    std::unique_lock<std::mutex> lock(g.m);
    uint64_t seen = g.heartbeat.load();
    Clock::time_point since = Clock::now();
    bool signalled = false;
    while (!g.cv.wait_for(lock, std::chrono::seconds(1), [&] { return g.slots_running == 0; })) {
      const uint64_t beat = g.heartbeat.load(std::memory_order_relaxed);
      if (beat != seen) {
        seen = beat;
        since = Clock::now();
        continue;
      }
      if (!signalled && std::chrono::duration<double>(Clock::now() - since).count() > options().hang_seconds) {
        signalled = true;
        const pthread_t r = g.runner.load();
        if (r != pthread_t{}) pthread_kill(r, kSpinSignal);
      }
    }
  }
  if (options().slot_exit_pause_us) {  // the emulator's own test: g outlives this a while, marked
    g.stream_left = true;
    std::this_thread::sleep_for(std::chrono::microseconds(4 * options().slot_exit_pause_us));
  }
  for (auto& sp : g.slots)  // blocks a failure left behind
    if (sp->block.dyn) free(sp->block.dyn);
  if (g.error != cudaSuccess && detail) *detail = g.report + (g.report.find("\n    ") == std::string::npos && g.error != cudaErrorLaunchTimeout ? g.state_report() : "");
  return g.error;
}

}  // namespace svp_emu
