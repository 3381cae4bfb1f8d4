// Fiber context switch for x86-64 System V: saves the callee-saved registers on the current
// stack, stores the stack pointer, loads the other one and restores its registers. No system
// call and no signal-mask save (swapcontext makes one per switch and was measured 13x slower,
// simulator.md). The kernels never change MXCSR or the x87 control word, so those are not saved.
#if defined(__x86_64__)
        .text

// void simt_switch_context(void** save_sp, void* new_sp)
        .globl  simt_switch_context
        .hidden simt_switch_context
        .type   simt_switch_context, @function
        .p2align 4
simt_switch_context:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   simt_switch_context, .-simt_switch_context

// First instruction a new fiber runs (fibers.cpp prepares its stack so that the `ret` above
// lands here with %rsp 16-byte aligned): calls %r13(%r12), which never returns.
        .globl  simt_fiber_trampoline
        .hidden simt_fiber_trampoline
        .type   simt_fiber_trampoline, @function
        .p2align 4
simt_fiber_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        movq    %r12, %rdi
        callq   *%r13
        ud2
        .cfi_endproc
        .size   simt_fiber_trampoline, .-simt_fiber_trampoline
#endif
        .section .note.GNU-stack,"",@progbits
