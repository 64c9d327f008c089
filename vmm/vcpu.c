/* vCPUs: creation, boot state, and the KVM_RUN loop (one thread each).
 * The run loop is a small dispatcher: port I/O and MMIO exits go to the trap
 * registry (vmm/bus.h); everything else ends the VM with a reason. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/cpuid.h"
#include "vmm/kvm.h"
#include "vmm/vm_internal.h"

/* The kick signal: its handler does nothing; its only job is to make KVM_RUN
 * return -EINTR. immediate_exit covers the window before KVM_RUN is entered. */
#define VCPU_KICK_SIGNAL SIGUSR1

#define MSR_IA32_SYSENTER_CS   0x174
#define MSR_IA32_SYSENTER_ESP  0x175
#define MSR_IA32_SYSENTER_EIP  0x176
#define MSR_IA32_MISC_ENABLE   0x1a0
#define MSR_MTRR_DEF_TYPE      0x2ff
#define MSR_STAR               0xc0000081
#define MSR_LSTAR              0xc0000082
#define MSR_CSTAR              0xc0000083
#define MSR_SYSCALL_MASK       0xc0000084
#define MSR_KERNEL_GS_BASE     0xc0000102
#define MISC_ENABLE_FAST_STRING 1ULL
#define MTRR_ENABLE            (1ULL << 11)
#define MTRR_TYPE_WB           6ULL

static void vcpu_kick_handler(int sig) { (void)sig; }

int vcpu_signal_setup(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: KVM_RUN must return EINTR. */
	return sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

void vcpu_kick(struct vcpu *vcpu)
{
	if (vcpu->run)
		__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (vcpu->thread_started)
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

/* Architectural MSR values Linux and our test guests expect at boot
 * (fast strings on, write-back default memory type, syscall MSRs zero). */
static int vcpu_set_boot_msrs(struct vcpu *vcpu)
{
	static const struct { uint32_t index; uint64_t value; } msrs[] = {
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 }, { MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 }, { MSR_LSTAR, 0 }, { MSR_CSTAR, 0 }, { MSR_SYSCALL_MASK, 0 },
		{ MSR_KERNEL_GS_BASE, 0 },
		{ MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
		{ MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WB },
	};
	enum { N = sizeof(msrs) / sizeof(msrs[0]) };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[N];
	} batch;
	size_t first = 0;

	/* One KVM_SET_MSRS for all (each vCPU ioctl costs a vcpu_load, several
	 * microseconds where MSR reads trap to a hypervisor). KVM sets entries
	 * in order and returns how many it set: past a refused one, go on with
	 * the rest, as a host that refuses one is not fatal. */
	while (first < N) {
		int ret;

		memset(&batch, 0, sizeof(batch));
		batch.hdr.nmsrs = (uint32_t)(N - first);
		for (size_t i = first; i < N; i++) {
			batch.e[i - first].index = msrs[i].index;
			batch.e[i - first].data = msrs[i].value;
		}
		ret = __kvm_ioctl(vcpu->fd, KVM_SET_MSRS, &batch);
		if (ret >= (int)(N - first))
			break;
		first += ret > 0 ? (size_t)ret : 0;
		log_debug("vcpu", "cpu%u: MSR 0x%x not settable", vcpu->id, msrs[first].index);
		first++;
	}
	return 0;
}

int vcpu_init(struct vm *vm, struct vcpu *vcpu, unsigned id)
{
	struct kvm_cpuid2 *cpuid;
	size_t size;
	int ret;

	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = kvm_ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (vcpu->fd < 0)
		return vcpu->fd;
	ret = kvm_ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ret < 0)
		return ret;
	vcpu->run_size = (size_t)ret;
	vcpu->run = mmap(NULL, vcpu->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		vcpu->run = NULL;
		return -errno;
	}
	if (id == 0)
		vm_coalesced_setup_ring(vm, vcpu);
	size = sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(vm->cpuid->entries[0]);
	cpuid = malloc(size);
	if (!cpuid)
		return -ENOMEM;
	memcpy(cpuid, vm->cpuid, size);
	cpuid_patch_for_vcpu(cpuid, id, vm->nr_vcpus);
	ret = kvm_ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid);
	free(cpuid);
	if (ret < 0)
		return ret;
	return vcpu_set_boot_msrs(vcpu);
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, vcpu->run_size);
	if (vcpu->fd > 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

/* The boot CPU starts at the kernel's entry; APs stay in the wait-for-SIPI
 * state KVM gives them with an in-kernel LAPIC, and the guest starts them. */
int vcpu_setup_boot(struct vcpu *vcpu)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	int ret;

	ret = kvm_ioctl(vcpu->fd, KVM_GET_SREGS, &sregs);
	if (ret < 0)
		return ret;
	memset(&regs, 0, sizeof(regs));
	ret = boot_setup_bsp(&vcpu->vm->mem, &vcpu->vm->boot, &regs, &sregs);
	if (ret < 0)
		return ret;
	ret = kvm_ioctl(vcpu->fd, KVM_SET_SREGS, &sregs);
	if (ret < 0)
		return ret;
	return kvm_ioctl(vcpu->fd, KVM_SET_REGS, &regs);
}

static void vcpu_handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	vcpu->stats.io++;
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (run->io.direction == KVM_EXIT_IO_OUT)
			bus_write(&vcpu->vm->pio, run->io.port, data, run->io.size);
		else
			bus_read(&vcpu->vm->pio, run->io.port, data, run->io.size);
	}
}

static void vcpu_handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;

	vcpu->stats.mmio++;
	if (run->mmio.is_write)
		bus_write(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	else
		bus_read(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
}

static void vcpu_report_internal_error(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct kvm_regs regs;
	unsigned long long rip = 0;

	if (__kvm_ioctl(vcpu->fd, KVM_GET_REGS, &regs) == 0)
		rip = regs.rip;
	vm_request_exit(vcpu->vm, VM_EXIT_STATUS_GUEST_CRASH,
			"cpu%u: KVM internal error (suberror %u%s) at rip 0x%llx", vcpu->id,
			run->internal.suberror,
			run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
				", instruction emulation failed" : "", rip);
}

static void vcpu_handle_system_event(struct vcpu *vcpu)
{
	switch (vcpu->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_exit(vcpu->vm, 0, "guest powered off");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_exit(vcpu->vm, 0, "guest requested reset");
		break;
	default:
		vm_request_exit(vcpu->vm, VM_EXIT_STATUS_GUEST_CRASH, "cpu%u: system event %u",
				vcpu->id, vcpu->run->system_event.type);
		break;
	}
}

/* Dispatch one exit. Returns false when this vCPU must stop. */
static bool vcpu_dispatch(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	vcpu->stats.exits++;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_io(vcpu);
		return true;
	case KVM_EXIT_MMIO:
		vcpu_handle_mmio(vcpu);
		return true;
	case KVM_EXIT_INTR:
		vcpu->stats.intr++;
		return true;
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		vcpu->stats.irq_window++;
		return true;
	case KVM_EXIT_HLT:
		/* With the in-kernel LAPIC, HLT is handled by KVM; seeing it means
		 * the CPU halted for good (e.g. interrupts disabled). */
		vcpu->stats.hlt++;
		vm_request_exit(vcpu->vm, VM_EXIT_STATUS_GUEST_CRASH, "cpu%u: halted", vcpu->id);
		return false;
	case KVM_EXIT_SHUTDOWN:
		vm_request_exit(vcpu->vm, VM_EXIT_STATUS_GUEST_CRASH,
				"cpu%u: triple fault (guest reset by shutdown)", vcpu->id);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vcpu_handle_system_event(vcpu);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_report_internal_error(vcpu);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vm_request_exit(vcpu->vm, VM_EXIT_STATUS_GUEST_CRASH,
				"cpu%u: VM entry failed (hardware reason 0x%llx)", vcpu->id,
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	default:
		vm_request_exit(vcpu->vm, VM_EXIT_STATUS_GUEST_CRASH, "cpu%u: unexpected exit reason %u",
				vcpu->id, run->exit_reason);
		return false;
	}
}

/* The pause point: park here while a pause is requested. Returns false if the
 * VM is exiting. Called with vm->lock held. */
static bool vcpu_park_locked(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	if (vm->pause_requested && !vm->exit_requested) {
		/* Atomic for vm_pause's lock-free spin; still under vm->lock. */
		__atomic_add_fetch(&vm->nr_paused, 1, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_requested && !vm->exit_requested)
			pthread_cond_wait(&vm->cond, &vm->lock);
		__atomic_sub_fetch(&vm->nr_paused, 1, __ATOMIC_RELAXED);
	}
	return !vm->exit_requested;
}

void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	char name[16];
	sigset_t set;

	snprintf(name, sizeof(name), "vcpu%u", vcpu->id);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		int ret;

		pthread_mutex_lock(&vm->lock);
		if (!vcpu_park_locked(vcpu)) {
			pthread_mutex_unlock(&vm->lock);
			break;
		}
		/* Cleared under the lock: a kick after this point sets it again. */
		__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&vm->lock);

		ret = __kvm_ioctl(vcpu->fd, KVM_RUN, 0);
		/* Buffered port writes first: they came before this exit. */
		vm_coalesced_drain(vm);
		vcpu->exit_pending = ret == 0;
		if (ret < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu->stats.intr++;
				continue;
			}
			vm_request_exit(vm, VM_EXIT_STATUS_VMM_ERROR, "cpu%u: KVM_RUN failed: %s", vcpu->id,
					strerror_safe(errno));
			break;
		}
		if (!vcpu_dispatch(vcpu))
			break;
	}

	pthread_mutex_lock(&vm->lock);
	vm->nr_running_threads--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}
