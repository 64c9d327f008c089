/* Coalesced port writes (KVM_CAP_COALESCED_PIO; Documentation/virt/kvm/api.rst,
 * KVM_REGISTER_COALESCED_MMIO): KVM appends guest writes to a registered port
 * range to a ring it shares with us (page KVM_CAP_COALESCED_MMIO of every
 * vCPU mapping) instead of exiting to us for each one. We replay the ring in
 * order through the port I/O bus:
 *   - on every vCPU exit, before that exit is handled, so a device sees the
 *     buffered writes and the access that exited in the order the guest made
 *     them (a full ring makes KVM exit with the write that did not fit);
 *   - from the event loop, 2 ms after vm_coalesced_flush_soon(), again as long
 *     as that finds writes: output a guest leaves in the ring before it goes
 *     idle still comes out, without a timer while nothing happens.
 * Devices may only coalesce registers whose writes need no immediate reply,
 * e.g. the UART's transmit register while its THRE interrupt is off. */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "vmm/kvm.h"
#include "vmm/log.h"
#include "vmm/vm_internal.h"

#define COALESCED_FLUSH_NS (2 * 1000 * 1000)

static void coalesced_timer_ready(void *opaque, uint32_t events);

void vm_coalesced_setup_ring(struct vm *vm, struct vcpu *vcpu)
{
	long page = sysconf(_SC_PAGESIZE);
	int off;

	if (vm->coalesced_ring || page <= 0)
		return;
	off = __kvm_ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
	if (off <= 0 || (size_t)(off + 1) * (size_t)page > vcpu->run_size)
		return;
	vm->coalesced_ring = (struct kvm_coalesced_mmio_ring *)((uint8_t *)vcpu->run + (size_t)off * (size_t)page);
	/* The ring fills the page after its header (KVM_COALESCED_MMIO_MAX). */
	vm->coalesced_max = (unsigned)(((size_t)page - sizeof(*vm->coalesced_ring)) /
				       sizeof(vm->coalesced_ring->coalesced_mmio[0]));
}

static int coalesced_timer_init(struct vm *vm)
{
	int fd, ret;

	if (vm->coalesced_timer >= 0)
		return 0;
	fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	ret = evl_add_fd(&vm->loop, fd, EPOLLIN, coalesced_timer_ready, vm);
	if (ret) {
		close(fd);
		return ret;
	}
	vm->coalesced_timer = fd;
	return 0;
}

int vm_coalesced_pio(struct vm *vm, uint16_t port, uint32_t len, bool on)
{
	struct kvm_coalesced_mmio_zone zone = { .addr = port, .size = len, .pio = 1 };
	int ret;

	if (__kvm_ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) <= 0)
		return -ENOTSUP;
	if (on) {
		ret = coalesced_timer_init(vm);
		if (ret)
			return ret;
	}
	return kvm_ioctl(vm->vm_fd, on ? KVM_REGISTER_COALESCED_MMIO : KVM_UNREGISTER_COALESCED_MMIO, &zone) < 0
		? -errno : 0;
}

static __thread bool replaying;

bool vm_coalesced_replaying(void)
{
	return replaying;
}

bool vm_coalesced_drain(struct vm *vm)
{
	struct kvm_coalesced_mmio_ring *ring = vm->coalesced_ring;
	uint64_t last_port = UINT64_MAX;
	bool any = false;
	uint32_t first;

	/* KVM publishes entries with a release store of last (smp_wmb before it). */
	if (!ring || __atomic_load_n(&ring->first, __ATOMIC_RELAXED) == __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
		return false;
	pthread_mutex_lock(&vm->coalesced_lock);
	replaying = true;
	first = ring->first;
	while (first != __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE)) {
		struct kvm_coalesced_mmio e = ring->coalesced_mmio[first % vm->coalesced_max];

		if (e.pio && e.len <= sizeof(e.data)) {
			if (last_port != UINT64_MAX && e.phys_addr != last_port)
				bus_flush(&vm->pio, last_port);
			bus_write(&vm->pio, e.phys_addr, e.data, e.len);
			last_port = e.phys_addr;
		}
		first = (first + 1) % vm->coalesced_max;
		/* Hand the slot back only once the entry is copied. */
		__atomic_store_n(&ring->first, first, __ATOMIC_RELEASE);
		any = true;
	}
	if (last_port != UINT64_MAX)
		bus_flush(&vm->pio, last_port);
	replaying = false;
	pthread_mutex_unlock(&vm->coalesced_lock);
	return any;
}

void vm_coalesced_flush_soon(struct vm *vm)
{
	struct itimerspec t = { .it_value = { .tv_nsec = COALESCED_FLUSH_NS } };

	if (vm->coalesced_timer < 0 || __atomic_exchange_n(&vm->coalesced_armed, true, __ATOMIC_ACQ_REL))
		return;
	if (timerfd_settime(vm->coalesced_timer, 0, &t, NULL) < 0)
		__atomic_store_n(&vm->coalesced_armed, false, __ATOMIC_RELEASE);
}

static void coalesced_timer_ready(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t expirations;

	(void)events;
	if (read(vm->coalesced_timer, &expirations, sizeof(expirations)) < 0 && errno == EAGAIN)
		return;
	/* Disarmed before looking, so a flush_soon() racing with us re-arms.
	 * Writes still arriving: look again in a moment. */
	__atomic_store_n(&vm->coalesced_armed, false, __ATOMIC_RELEASE);
	if (vm_coalesced_drain(vm))
		vm_coalesced_flush_soon(vm);
}

void vm_coalesced_destroy(struct vm *vm)
{
	if (vm->coalesced_timer >= 0)
		close(vm->coalesced_timer);
	vm->coalesced_timer = -1;
	vm->coalesced_ring = NULL;
	pthread_mutex_destroy(&vm->coalesced_lock);
}
