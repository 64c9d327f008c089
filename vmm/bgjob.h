/* Background setup steps: run a step of VM creation on a short-lived thread
 * while the caller carries on. For steps that mostly wait (an SRCU grace
 * period, kthreadd creating KVM's PIT thread) or trap to the hypervisor below
 * us (host CPUID): `vmm run` start-up is benchmarked against QEMU.
 *
 * bgjob_finish() returns the step's result. If the thread has not begun the
 * step by then, the caller runs it itself: a busy machine never makes the
 * caller wait for a thread to be scheduled. Whoever runs the step, it runs
 * exactly once, and @arg must stay valid until bgjob_finish() returns. */
#ifndef VMM_BGJOB_H
#define VMM_BGJOB_H

struct bgjob;

/* NULL if no thread could be started: bgjob_finish(NULL, ...) runs the step. */
struct bgjob *bgjob_start(int (*fn)(void *arg), void *arg);
/* Consumes @job; @fn and @arg as given to bgjob_start (used when @job is NULL). */
int bgjob_finish(struct bgjob *job, int (*fn)(void *arg), void *arg);
/* Consumes @job without running the step: waits only if the thread is
 * running it (so @arg is free to go afterwards). NULL is a no-op. */
void bgjob_cancel(struct bgjob *job);

#endif
