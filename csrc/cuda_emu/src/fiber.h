// Fibers: the execution contexts of emulated CUDA threads.
//
// Every CUDA thread of a resident block runs on a fiber of its own (its own
// stack, its own registers), switched cooperatively by the block's scheduler
// at the points where a real GPU thread may wait (barriers, warp collectives,
// __nanosleep) or where the emulator chooses to interleave (atomics). A switch
// saves only the callee-saved registers (the SysV ABI makes the rest the
// caller's), so it costs a few nanoseconds: a warp reduction of 5 shuffles
// over 32 lanes is about 320 switches.
#pragma once

#include <cstddef>

namespace svp_emu {

// A suspended context: the stack pointer under which its registers were saved.
struct FiberContext {
  void* sp = nullptr;
};

// Saves the running context into *from and resumes `to`.
void switch_context(FiberContext* from, const FiberContext* to);

// Prepares `ctx` so that switching to it runs entry(arg) on the stack
// [lo, lo + size). entry must never return (it switches away for good).
void make_context(FiberContext* ctx, char* lo, size_t size, void (*entry)(void*), void* arg);

// AddressSanitizer must be told when the stack changes under it (otherwise it
// reports false stack overflows and loses track of fake stacks).
void asan_start_switch(void** fake_stack_save, const void* bottom, size_t size);
void asan_finish_switch(void* fake_stack_save, const void** old_bottom, size_t* old_size);

// Clears ASan's record of the frames once on a stack that is reused from its
// top (a new context, or a landing after a fault): no-op without ASan.
void asan_forget_stack(char* lo, size_t size);

}  // namespace svp_emu
