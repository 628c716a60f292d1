// Fibers (see fiber.h): a hand-written context switch on x86-64 (a few
// nanoseconds; ucontext's swapcontext makes a system call per switch, which
// would dominate the emulation), ucontext elsewhere.
#include "fiber.h"

#include <cstdint>
#include <cstdlib>
#include <cstdio>

#if defined(__SANITIZE_ADDRESS__)
#define SVP_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SVP_EMU_ASAN 1
#endif
#endif
#ifdef SVP_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace svp_emu {

void asan_start_switch(void** fake_stack_save, const void* bottom, size_t size) {
#ifdef SVP_EMU_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}

void asan_finish_switch(void* fake_stack_save, const void** old_bottom, size_t* old_size) {
#ifdef SVP_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, old_bottom, old_size);
#else
  (void)fake_stack_save, (void)old_bottom, (void)old_size;
#endif
}

// A stack handed to a new context may hold the frames of a fiber that was
// abandoned mid-call (a failed grid's threads are never resumed): their
// redzones are still poisoned in ASan's shadow, and the new fiber's frames
// would trip over them (a false stack-buffer-overflow).
void asan_forget_stack(char* lo, size_t size) {
#ifdef SVP_EMU_ASAN
  __asan_unpoison_memory_region(lo, size);
#else
  (void)lo, (void)size;
#endif
}

}  // namespace svp_emu

#if defined(__x86_64__)

// svp_emu_switch(void** save_sp, void* load_sp): pushes the callee-saved
// registers on the current stack, stores the stack pointer, loads the other
// one and pops its registers; `ret` resumes it. The SSE and x87 control words
// are not switched: device code never changes them (and ldmxcsr is slow). A new context's stack is laid out so that its first `ret` lands in
// svp_emu_fiber_entry with the entry function in r13 and its argument in r12.
asm(R"(
  .pushsection .text
  .p2align 4
  .globl svp_emu_switch
  .hidden svp_emu_switch
  .type svp_emu_switch, @function
svp_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size svp_emu_switch, .-svp_emu_switch

  .p2align 4
  .globl svp_emu_fiber_entry
  .hidden svp_emu_fiber_entry
  .type svp_emu_fiber_entry, @function
svp_emu_fiber_entry:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size svp_emu_fiber_entry, .-svp_emu_fiber_entry
  .popsection
)");

extern "C" void svp_emu_switch(void** save_sp, void* load_sp);
extern "C" void svp_emu_fiber_entry();

namespace svp_emu {

void switch_context(FiberContext* from, const FiberContext* to) { svp_emu_switch(&from->sp, to->sp); }

void make_context(FiberContext* ctx, char* lo, size_t size, void (*entry)(void*), void* arg) {
  asan_forget_stack(lo, size);
  // the top, 16-byte aligned, less a little room
  const uintptr_t top = (reinterpret_cast<uintptr_t>(lo) + size - 64) & ~uintptr_t(15);
  // frame, from low to high: r15, r14, r13, r12, rbx, rbp, return address;
  // after the `ret` rsp = top - 16 is 16-byte aligned, so the `call` in
  // svp_emu_fiber_entry enters entry() with the ABI's alignment
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 72);
  sp[0] = 0;                                          // r15
  sp[1] = 0;                                          // r14
  sp[2] = reinterpret_cast<uint64_t>(entry);          // r13
  sp[3] = reinterpret_cast<uint64_t>(arg);            // r12
  sp[4] = 0;                                          // rbx
  sp[5] = 0;                                          // rbp
  sp[6] = reinterpret_cast<uint64_t>(&svp_emu_fiber_entry);
  ctx->sp = sp;
}

}  // namespace svp_emu

#else  // portable fallback: ucontext (a system call per switch)

#include <ucontext.h>

namespace svp_emu {

namespace {
struct UContext {
  ucontext_t uc;
};
}  // namespace

void switch_context(FiberContext* from, const FiberContext* to) {
  if (!from->sp) from->sp = new UContext();
  swapcontext(&static_cast<UContext*>(from->sp)->uc, &static_cast<UContext*>(to->sp)->uc);
}

void make_context(FiberContext* ctx, char* lo, size_t size, void (*entry)(void*), void* arg) {
  asan_forget_stack(lo, size);
  if (!ctx->sp) ctx->sp = new UContext();
  ucontext_t* uc = &static_cast<UContext*>(ctx->sp)->uc;
  getcontext(uc);
  uc->uc_stack.ss_sp = lo;
  uc->uc_stack.ss_size = size;
  uc->uc_link = nullptr;
  // makecontext passes int arguments: split the pointer in two
  const uintptr_t a = reinterpret_cast<uintptr_t>(arg);
  static void (*s_entry)(void*) = nullptr;
  s_entry = entry;
  makecontext(uc, reinterpret_cast<void (*)()>(+[](unsigned hi, unsigned lo32) {
                s_entry(reinterpret_cast<void*>((uintptr_t(hi) << 32) | lo32));
              }),
              2, static_cast<unsigned>(a >> 32), static_cast<unsigned>(a & 0xffffffffu));
}

}  // namespace svp_emu

#endif
