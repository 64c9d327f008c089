/* The KVM core without a kernel loader: hand-written real-mode code in RAM,
 * the vCPU run loop, port I/O dispatch, pause/resume and exit. Needs /dev/kvm. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/legacy.h"
#include "vmm/cpuid.h"
#include "vmm/kvm.h"
#include "vmm/vm.h"

static struct vm *make_vm_console(unsigned cpus, const uint8_t *code, size_t len, const char *console_file)
{
	struct vm_config cfg;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
	char err[256];
	struct vm *vm;

	config_init(&cfg);
	cfg.kernel = strdup("(none)");
	cfg.cpus = cpus;
	cfg.memory_mib = 16;
	cfg.console = console_file ? CONSOLE_FILE : CONSOLE_NONE;
	if (console_file)
		cfg.console_path = strdup(console_file);
	cr_assert_eq(vm_create_bare(&vm, &cfg, NULL, err, sizeof(err)), 0, "%s", err);
	config_free(&cfg);
	cr_assert_eq(mem_write(&vm->mem, 0x1000, code, len), 0);
	/* Real mode at 0000:1000 (reset state with CS base 0). */
	cr_assert_eq(kvm_ioctl(vm->vcpus[0].fd, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	cr_assert_eq(kvm_ioctl(vm->vcpus[0].fd, KVM_SET_SREGS, &sregs), 0);
	cr_assert_eq(kvm_ioctl(vm->vcpus[0].fd, KVM_SET_REGS, &regs), 0);
	return vm;
}

static struct vm *make_vm(unsigned cpus, const uint8_t *code, size_t len)
{
	return make_vm_console(cpus, code, len, NULL);
}

static void need_kvm(void)
{
	if (access("/dev/kvm", R_OK | W_OK))
		cr_skip_test("/dev/kvm is not available");
}

Test(vm_core, debug_exit_value_is_the_exit_status)
{
	/* mov al, 42; out 0xf4, al; hlt */
	static const uint8_t code[] = { 0xb0, 42, 0xe6, 0xf4, 0xf4 };
	struct vm *vm;

	need_kvm();
	vm = make_vm(1, code, sizeof(code));
	cr_assert_eq(vm_start(vm), 0);
	cr_assert_eq(vm_wait_exit(vm), 42);
	cr_assert(strstr(vm->exit_reason, "debug-exit"), "%s", vm->exit_reason);
	cr_assert_geq(vm->vcpus[0].stats.io, 1);
	vm_destroy(vm);
}

Test(vm_core, pause_and_resume_a_spinning_guest)
{
	/* 1: inc word [0x2000]; jmp 1b */
	static const uint8_t code[] = { 0xff, 0x06, 0x00, 0x20, 0xeb, 0xfa };
	volatile uint16_t *counter;
	struct vm *vm;
	uint16_t a, b;

	need_kvm();
	vm = make_vm(2, code, sizeof(code));
	counter = mem_gpa_to_hva(&vm->mem, 0x2000, 2);
	cr_assert_eq(vm_start(vm), 0);
	cr_assert_eq(vm_start(vm), -EBUSY, "starting twice is refused");
	while (*counter < 10)
		usleep(1000);
	cr_assert_eq(vm_pause(vm), 0);
	cr_assert_eq(vm->state, VM_STATE_PAUSED);
	cr_assert_eq(vm_pause(vm), -EBUSY, "pausing a paused VM is refused");
	a = *counter;
	usleep(50000);
	b = *counter;
	cr_assert_eq(a, b, "a paused guest makes no progress (%u -> %u)", a, b);
	cr_assert_eq(vm_resume(vm), 0);
	while (*counter == b)
		usleep(1000);
	vm_request_exit(vm, 7, "test done");
	cr_assert_eq(vm_wait_exit(vm), 7);
	cr_assert_eq(vm->state, VM_STATE_SHUTDOWN);
	vm_destroy(vm);
}

/* A device that records quiesce/unquiesce and what it saw at that moment. */
struct probe_dev {
	struct device dev;
	unsigned quiesces, unquiesces;
	bool vcpus_parked_at_quiesce, vcpus_parked_at_unquiesce;
};

static bool vcpus_parked(struct vm *vm)
{
	bool parked;

	pthread_mutex_lock(&vm->lock);
	parked = vm->pause_requested && vm->nr_paused == vm->nr_running_threads;
	pthread_mutex_unlock(&vm->lock);
	return parked;
}

static void probe_quiesce(struct device *dev)
{
	struct probe_dev *p = (struct probe_dev *)dev;

	p->quiesces++;
	p->vcpus_parked_at_quiesce = vcpus_parked(dev->vm);
}

static void probe_unquiesce(struct device *dev)
{
	struct probe_dev *p = (struct probe_dev *)dev;

	p->unquiesces++;
	p->vcpus_parked_at_unquiesce = vcpus_parked(dev->vm);
}

static void probe_destroy(struct device *dev)
{
	(void)dev;   /* owned by the test */
}

static const struct device_ops probe_ops = {
	.type = "probe", .destroy = probe_destroy, .quiesce = probe_quiesce, .unquiesce = probe_unquiesce,
};

/* Back ends stop after the vCPUs (which may still kick them) and restart
 * before them (so their kicks are served): see device.h. */
Test(vm_core, pause_quiesces_devices_after_the_vcpus)
{
	static const uint8_t code[] = { 0xff, 0x06, 0x00, 0x20, 0xeb, 0xfa };
	static struct probe_dev probe;
	volatile uint16_t *counter;
	struct vm *vm;

	need_kvm();
	vm = make_vm(2, code, sizeof(code));
	vm_add_device(vm, &probe.dev, &probe_ops, "probe0");
	counter = mem_gpa_to_hva(&vm->mem, 0x2000, 2);
	cr_assert_eq(vm_start(vm), 0);
	while (*counter < 10)
		usleep(1000);
	cr_assert_eq(probe.quiesces, 0, "a running VM's devices are not quiesced");
	cr_assert_eq(vm_pause(vm), 0);
	cr_assert_eq(probe.quiesces, 1);
	cr_assert(probe.vcpus_parked_at_quiesce, "quiesced before every vCPU was parked");
	cr_assert_eq(vm_pause(vm), -EBUSY);
	cr_assert_eq(probe.quiesces, 1, "a refused pause quiesces nothing");
	cr_assert_eq(vm_resume(vm), 0);
	cr_assert_eq(probe.unquiesces, 1);
	cr_assert(probe.vcpus_parked_at_unquiesce, "vCPUs ran before the devices restarted");
	cr_assert_eq(vm_resume(vm), -EBUSY);
	cr_assert_eq(probe.unquiesces, 1);
	vm_request_exit(vm, 0, "test done");
	vm_wait_exit(vm);
	vm_destroy(vm);
}

/* The emulator on PVM hosts lacks some instructions (shared/ENVIRONMENT.md);
 * on hardware KVM the same guest takes #BP through an empty IVT instead. Either
 * way the VM must end with a reason, not hang or crash the VMM. */
Test(vm_core, guest_crash_ends_the_vm_with_a_reason)
{
	/* popcnt ax, ax (emulation failure here); then ud2 with a zero-limit IVT. */
	static const uint8_t code[] = { 0x0f, 0x01, 0x1e, 0x10, 0x10,   /* lidt [0x1010] */
					0xf3, 0x0f, 0xb8, 0xc0,         /* popcnt ax, ax */
					0x0f, 0x0b,                     /* ud2 */
					0xf4, 0, 0, 0, 0,
					0, 0, 0, 0, 0, 0 };            /* 0x1010: limit 0, base 0 */
	struct vm *vm;
	int status;

	need_kvm();
	vm = make_vm(1, code, sizeof(code));
	cr_assert_eq(vm_start(vm), 0);
	status = vm_wait_exit(vm);
	cr_assert_eq(status, 126, "status %d: %s", status, vm->exit_reason);
	cr_assert(strstr(vm->exit_reason, "cpu0:"), "%s", vm->exit_reason);
	vm_destroy(vm);
}

/* The CPUID template fetched in the background is what a direct
 * KVM_GET_SUPPORTED_CPUID gives. The host's APIC ids in leaves 1 and 0xb
 * follow the CPU the fetch ran on; the per-vCPU patch replaces them, so
 * compare patched copies. */
static bool same_cpuid(struct kvm_cpuid2 *a, struct kvm_cpuid2 *b)
{
	cpuid_patch_for_vcpu(a, 0, 1);
	cpuid_patch_for_vcpu(b, 0, 1);
	return a->nent == b->nent && !memcmp(a->entries, b->entries, a->nent * sizeof(a->entries[0]));
}

Test(vm_core, background_cpuid_matches_a_direct_fetch)
{
	static const uint8_t code[] = { 0xf4 };
	struct kvm_cpuid2 *direct = NULL;
	int kvm_fd;

	need_kvm();
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	cr_assert_geq(kvm_fd, 0);
	cr_assert_eq(cpuid_get_supported(kvm_fd, &direct), 0);
	for (int i = 0; i < 5; i++) {
		struct vm *vm = make_vm(1, code, sizeof(code));
		struct kvm_cpuid2 *copy = malloc(sizeof(*direct) + direct->nent * sizeof(direct->entries[0]));

		memcpy(copy, direct, sizeof(*direct) + direct->nent * sizeof(direct->entries[0]));
		cr_assert_null(vm->cpuid_job);
		cr_assert_null(vm->pit_job);
		cr_assert(same_cpuid(copy, vm->cpuid), "run %d", i);
		free(copy);
		vm_destroy(vm);
	}
	free(direct);
	close(kvm_fd);
}

static struct uart *find_uart(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->name, "uart0"))
			return (struct uart *)d;
	return NULL;
}

static bool have_coalesced_pio(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int ret = fd < 0 ? 0 : ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO);

	if (fd >= 0)
		close(fd);
	return ret > 0;
}

/* A UART data-port write KVM buffered reaches the device before the next
 * access that exits: set DLAB, write the divisor latch (buffered), read it
 * back (exits) and report it through the debug-exit port. */
Test(vm_core, coalesced_uart_write_lands_before_the_next_access)
{
	static const uint8_t code[] = {
		0xba, 0xfb, 0x03, 0xb0, 0x80, 0xee,   /* mov dx, 0x3fb; mov al, 0x80; out dx, al (LCR.DLAB) */
		0xba, 0xf8, 0x03, 0xb0, 0x2a, 0xee,   /* mov dx, 0x3f8; mov al, 42; out dx, al (DLL) */
		0xb0, 0x00, 0xec,                     /* mov al, 0; in al, dx (DLL) */
		0xe6, 0xf4, 0xf4,                     /* out 0xf4, al; hlt */
	};
	struct vm *vm;

	need_kvm();
	vm = make_vm(1, code, sizeof(code));
	cr_assert_eq(find_uart(vm)->tx_coalesced, have_coalesced_pio());
	cr_assert_eq(vm_start(vm), 0);
	cr_assert_eq(vm_wait_exit(vm), 42, "%s", vm->exit_reason);
	/* LCR write, DLL read, debug exit: the DLL write itself did not exit. */
	if (have_coalesced_pio())
		cr_assert_eq(vm->vcpus[0].stats.io, 3);
	vm_destroy(vm);
}

/* Turning the THRE interrupt on makes data-port writes exit again: that
 * interrupt must follow each write at once. */
Test(vm_core, uart_thre_interrupt_stops_coalescing)
{
	static const uint8_t code[] = {
		0xba, 0xf8, 0x03, 0xb0, 0x41, 0xee,   /* mov dx, 0x3f8; mov al, 'A'; out dx, al */
		0xba, 0xf9, 0x03, 0xb0, 0x02, 0xee,   /* mov dx, 0x3f9; mov al, 2; out dx, al (IER.THRI) */
		0xba, 0xf8, 0x03, 0xb0, 0x42, 0xee,   /* mov dx, 0x3f8; mov al, 'B'; out dx, al */
		0xb0, 0x07, 0xe6, 0xf4, 0xf4,         /* mov al, 7; out 0xf4, al; hlt */
	};
	struct vm *vm;
	struct uart *u;

	need_kvm();
	vm = make_vm(1, code, sizeof(code));
	u = find_uart(vm);
	cr_assert_eq(vm_start(vm), 0);
	cr_assert_eq(vm_wait_exit(vm), 7, "%s", vm->exit_reason);
	cr_assert_eq(u->tx_bytes, 2);
	cr_assert_not(u->tx_coalesced);
	/* IER write, 'B', debug exit; 'A' only when nothing is coalesced. */
	cr_assert_eq(vm->vcpus[0].stats.io, have_coalesced_pio() ? 3 : 4);
	vm_destroy(vm);
}

/* Output written while KVM buffered the data port comes out complete and in
 * order (one write() per replayed batch), before the exit is handled. */
Test(vm_core, coalesced_uart_output_is_complete_and_in_order)
{
	static const uint8_t code[] = {
		0xba, 0xf8, 0x03,                     /* mov dx, 0x3f8 */
		0xb0, 'a', 0xee, 0xb0, 'b', 0xee,     /* out 'a', out 'b' */
		0xb0, 'c', 0xee, 0xb0, '\n', 0xee,    /* out 'c', out '\n' */
		0xb0, 0x00, 0xe6, 0xf4, 0xf4,         /* out 0xf4, 0; hlt */
	};
	char path[] = "/tmp/vmm-test-console-XXXXXX";
	char buf[16] = "";
	struct vm *vm;
	int fd;

	need_kvm();
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	vm = make_vm_console(1, code, sizeof(code), path);
	cr_assert_eq(vm_start(vm), 0);
	cr_assert_eq(vm_wait_exit(vm), 0, "%s", vm->exit_reason);
	cr_assert_eq(pread(fd, buf, sizeof(buf) - 1, 0), 4);
	cr_assert_str_eq(buf, "abc\n");
	vm_destroy(vm);
	close(fd);
	unlink(path);
}
