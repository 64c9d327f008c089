/* The root object: one struct vm owns everything for one VM and is passed
 * explicitly. Lifecycle:
 *   vm_create()  KVM VM, RAM, irqchip, devices, vCPUs, kernel loaded  -> CREATED
 *   vm_start()   vCPU threads run                                     -> RUNNING
 *   vm_pause() / vm_resume()                                          <-> PAUSED
 *   guest exit/poweroff/reset/error, or vm_request_exit()             -> SHUTDOWN
 *   vm_wait_exit() returns the exit status; vm_destroy() frees it all. */
#ifndef VMM_VM_H
#define VMM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/boot.h"
#include "vmm/bus.h"
#include "vmm/config.h"
#include "vmm/device.h"
#include "vmm/eventloop.h"
#include "vmm/mem.h"

struct pci_bus;
struct bgjob;

#define VM_INHERIT_MAX_FDS 16

/* Back-end fds a new VM takes over instead of opening its back ends (live
 * update: the new process inherits the old one's TAP/macvtap queues, so the
 * guest keeps the very same queues). A device that takes an fd sets it to -1;
 * the caller closes what is left. */
struct vm_inherit_net {
	unsigned nr_fds;                  /* 0: open the back end as configured */
	int fds[VM_INHERIT_MAX_FDS];      /* one per queue pair, in order */
	unsigned tun_offloads;            /* TUN_F_* the back end accepts (probed by the old process) */
};

struct vm_inherit {
	struct vm_inherit_net nets[CONFIG_MAX_NETS];
};

/* What vm_create_with() builds the VM from besides its configuration. */
struct vm_create_opts {
	struct guest_mem *mem;            /* RAM to take over (restore, migration), or NULL */
	const struct kvm_cpuid2 *cpuid;   /* restore: the guest's CPUID template, or NULL */
	struct vm_inherit *inherit;       /* live update: back-end fds, or NULL */
};

enum vm_state { VM_STATE_CREATED, VM_STATE_RUNNING, VM_STATE_PAUSED, VM_STATE_SHUTDOWN };

const char *vm_state_name(enum vm_state s);

struct vcpu_stats {
	_Atomic uint64_t exits, io, mmio, hlt, irq_window, intr;
};

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool thread_started;
	bool on_caller;        /* runs on the thread that called vm_run_on_caller (not joined) */
	/* The last KVM_RUN returned an exit that the next KVM_RUN completes (an
	 * I/O or MMIO read's data, api.rst "kvm_run"); false after EINTR. */
	bool exit_pending;
	struct vcpu_stats stats;
};

struct vm {
	struct vm_config cfg;
	int kvm_fd, vm_fd;
	struct guest_mem mem;
	struct bus pio, mmio;
	struct event_loop loop;
	unsigned nr_vcpus;
	struct vcpu *vcpus;
	struct device *devices;            /* singly linked, in creation order */
	struct pci_bus *pci;               /* PCI root bus (devices/pci_vm.c) */
	struct boot_entry boot;
	struct kvm_cpuid2 *cpuid;          /* per-VM template; per-vCPU APIC ids patched in */
	struct vm_inherit *inherit;        /* during vm_create_with() only */
	/* Creation steps running in the background (vmm/bgjob.h) until
	 * vm_create_restore finishes them. */
	struct bgjob *cpuid_job;           /* KVM_GET_SUPPORTED_CPUID into cpuid */
	struct bgjob *pit_job;             /* KVM_CREATE_PIT2 */

	/* Interrupt routing: the GSI table we last gave KVM_SET_GSI_ROUTING. */
	pthread_mutex_t irq_lock;
	struct kvm_irq_routing *routing;
	unsigned next_gsi;

	/* Serializes vm_pause/vm_start_paused/vm_resume as a whole (vCPUs and
	 * device quiesce together). */
	pthread_mutex_t pause_lock;
	/* Coalesced port writes (vmm/coalesced.c): KVM's ring, its flush timer. */
	struct kvm_coalesced_mmio_ring *coalesced_ring;
	unsigned coalesced_max;
	pthread_mutex_t coalesced_lock;
	int coalesced_timer;
	bool coalesced_armed;

	/* Lifecycle, guarded by lock; cond signals state changes. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	bool pause_requested;
	unsigned nr_paused;                /* vCPU threads parked in the pause point */
	unsigned nr_running_threads;
	bool exit_requested;
	int exit_status;
	char exit_reason[160];
	uint64_t start_ns;
};

int vm_create(struct vm **out, const struct vm_config *cfg, char *err, size_t errlen);
/* Like vm_create but without loading a kernel; if @mem is given, the VM takes
 * ownership of that RAM (restore, incoming migration, live update). */
int vm_create_bare(struct vm **out, const struct vm_config *cfg, struct guest_mem *mem,
		   char *err, size_t errlen);
/* vm_create_bare with the guest's saved CPUID template instead of the host's
 * (restore: the guest keeps seeing the CPU it booted on; also skips the slow
 * KVM_GET_SUPPORTED_CPUID). @cpuid may be NULL. */
int vm_create_restore(struct vm **out, const struct vm_config *cfg, struct guest_mem *mem,
		      const struct kvm_cpuid2 *cpuid, char *err, size_t errlen);
/* The general form of the two above (no kernel loaded); @o may be NULL. */
int vm_create_with(struct vm **out, const struct vm_config *cfg, const struct vm_create_opts *o,
		   char *err, size_t errlen);
/* (Re)register RAM with KVM; @flags e.g. KVM_MEM_LOG_DIRTY_PAGES. */
int vm_set_memslots(struct vm *vm, uint32_t flags);
int vm_start(struct vm *vm);
/* Like vm_start, but vCPU 0 runs on the calling thread; returns once it has
 * stopped (an exit was requested). Saves a thread hand-off at start and at
 * exit for `vmm run`. The caller still calls vm_wait_exit (or exits). */
int vm_run_on_caller(struct vm *vm);
/* Park every vCPU at a clean point (out of KVM_RUN), then quiesce every
 * device back end (device_ops.quiesce); returns when all are stopped. */
int vm_pause(struct vm *vm);
/* Like vm_start, but the vCPU threads park before their first KVM_RUN and the
 * VM ends up PAUSED (restore, incoming migration: resume is the caller's choice). */
int vm_start_paused(struct vm *vm);
/* Restart the device back ends (device_ops.unquiesce), then the vCPUs. */
int vm_resume(struct vm *vm);
/* Ask the VM to stop: status becomes the process exit status. Safe from any
 * thread, including vCPU threads; the first request wins. */
void vm_request_exit(struct vm *vm, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Block until the VM has shut down and all vCPU threads are joined. */
int vm_wait_exit(struct vm *vm);
void vm_destroy(struct vm *vm);

void vm_add_device(struct vm *vm, struct device *dev, const struct device_ops *ops, const char *name);

/* Interrupts: level for GSI lines (ISA IRQs through PIC+IOAPIC), MSI injection,
 * and irqfd/ioeventfd helpers for device back ends. */
int vm_irq_line(struct vm *vm, unsigned gsi, int level);
int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data);
/* Allocate a GSI routed to an MSI (addr,data) and return it; update with vm_msi_route_update. */
int vm_msi_route_add(struct vm *vm, uint64_t addr, uint32_t data, unsigned *gsi);
int vm_msi_route_update(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data);
int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign);
int vm_ioeventfd(struct vm *vm, int fd, uint64_t addr, uint32_t len, bool pio, bool assign);

/* Coalesced port writes (vmm/coalesced.c): guest writes to [port, port+len)
 * no longer exit; they reach the bus in order, at the next vCPU exit or about
 * 2 ms after vm_coalesced_flush_soon(). Only for registers whose writes need
 * no immediate effect. -ENOTSUP without KVM_CAP_COALESCED_PIO. */
int vm_coalesced_pio(struct vm *vm, uint16_t port, uint32_t len, bool on);
/* Replay what the ring holds; true if it held anything. Any thread. */
bool vm_coalesced_drain(struct vm *vm);
/* True on a thread replaying the ring: the device's bus flush op follows
 * the batch, so it may hold back side effects until then. */
bool vm_coalesced_replaying(void);
/* Drain from the event loop shortly (a device expects buffered writes). */
void vm_coalesced_flush_soon(struct vm *vm);

#endif
