/* VM lifecycle: create (KVM VM, RAM, irqchip, devices, vCPUs, kernel),
 * start, pause/resume, exit, destroy. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/acpi.h"
#include "vmm/bgjob.h"
#include "vmm/cpuid.h"
#include "vmm/kvm.h"
#include "vmm/layout.h"
#include "vmm/vm_internal.h"

/* Intel VT needs these three pages somewhere in guest-physical space that is
 * neither RAM nor MMIO; just below the LAPIC/BIOS area as QEMU/kvmtool do. */
#define VM_TSS_ADDR          0xfffbd000ULL
#define VM_IDENTITY_MAP_ADDR 0xfffbc000ULL
#define VM_MAX_KERNEL_SIZE   (512ULL << 20)

const char *vm_state_name(enum vm_state s)
{
	switch (s) {
	case VM_STATE_CREATED:  return "created";
	case VM_STATE_RUNNING:  return "running";
	case VM_STATE_PAUSED:   return "paused";
	case VM_STATE_SHUTDOWN: return "shutdown";
	}
	return "unknown";
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int vm_fetch_cpuid(void *opaque)
{
	struct vm *vm = opaque;

	return cpuid_get_supported(vm->kvm_fd, &vm->cpuid);
}

/* @fetch_cpuid: fetch the supported CPUID in the background meanwhile. */
static int vm_open_kvm(struct vm *vm, bool fetch_cpuid, char *err, size_t errlen)
{
	int ret;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open /dev/kvm: %s (is KVM available and are you allowed to use it?)",
			 strerror_safe(errno));
		return ret;
	}
	ret = kvm_ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (ret != KVM_API_VERSION) {
		snprintf(err, errlen, "/dev/kvm: unsupported KVM API version %d", ret);
		return -ENOTSUP;
	}
	if (fetch_cpuid)
		vm->cpuid_job = bgjob_start(vm_fetch_cpuid, vm);
	vm->vm_fd = kvm_ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		snprintf(err, errlen, "KVM_CREATE_VM failed: %s", strerror_safe(-vm->vm_fd));
		return vm->vm_fd;
	}
	return 0;
}

/* KVM_CREATE_PIT2 mostly waits for kthreadd to start the PIT's thread
 * (milliseconds on a busy machine): a background step, after the irqchip.
 * The RAM memslot is not one: set right after KVM_CREATE_VM its SRCU grace
 * period takes ~0.1 ms, after the irqchip's routing one it often waits a
 * scheduler tick or more (measured here: 0.1 ms vs 4-8 ms under load). */
static int vm_create_pit(void *opaque)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	struct vm *vm = opaque;
	int ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit);

	return ret < 0 ? ret : 0;
}

/* Wait for (or run) the background creation steps still out. */
static int vm_finish_jobs(struct vm *vm)
{
	int ret = 0, r;

	if (vm->cpuid_job) {
		ret = bgjob_finish(vm->cpuid_job, vm_fetch_cpuid, vm);
		vm->cpuid_job = NULL;
	}
	if (vm->pit_job) {
		r = bgjob_finish(vm->pit_job, vm_create_pit, vm);
		vm->pit_job = NULL;
		ret = ret ? ret : r;
	}
	return ret;
}

static int vm_setup_irqchip(struct vm *vm)
{
	int ret;

	/* Best effort: needed on VMX hosts, meaningless elsewhere. */
	if (__kvm_ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VM_TSS_ADDR) < 0)
		log_debug("vm", "KVM_SET_TSS_ADDR: %s", strerror_safe(errno));
	uint64_t idmap = VM_IDENTITY_MAP_ADDR;
	if (__kvm_ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		log_debug("vm", "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror_safe(errno));

	ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0);
	if (ret < 0)
		return ret;
	vm->pit_job = bgjob_start(vm_create_pit, vm);
	return irq_init(vm);
}

int vm_set_memslots(struct vm *vm, uint32_t flags)
{
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region slot = {
			.slot = i, .flags = flags, .guest_phys_addr = r->gpa,
			.memory_size = r->size, .userspace_addr = (uint64_t)(uintptr_t)r->hva,
		};
		int ret = kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot);

		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Map a kernel or initrd read-only: no copy, and only the pages the loader
 * touches are read. Unmap with munmap(*data, *len) (len 0 maps nothing). */
static int map_file(const char *path, const char *what, uint8_t **data, size_t *len,
		    char *err, size_t errlen)
{
	struct stat st;
	int fd, ret;

	*data = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: cannot open '%s': %s", what, path, strerror_safe(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: '%s' is not a regular file", what, path);
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > VM_MAX_KERNEL_SIZE) {
		snprintf(err, errlen, "%s: '%s' is larger than %llu MiB", what, path, VM_MAX_KERNEL_SIZE >> 20);
		close(fd);
		return -EFBIG;
	}
	if (st.st_size > 0) {
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (p == MAP_FAILED) {
			ret = -errno;
			snprintf(err, errlen, "%s: cannot map '%s': %s", what, path, strerror_safe(errno));
			close(fd);
			return ret;
		}
		*data = p;
		*len = (size_t)st.st_size;
	}
	close(fd);
	return 0;
}

static void unmap_file(uint8_t *data, size_t len)
{
	if (data && len)
		munmap(data, len);
}

static int vm_load_kernel(struct vm *vm, char *err, size_t errlen)
{
	struct acpi_config acpi = { .nr_cpus = vm->nr_vcpus };
	struct boot_input in = { .cmdline = vm->cfg.cmdline };
	uint8_t *kernel = NULL, *initrd = NULL;
	int ret;

	ret = map_file(vm->cfg.kernel, "kernel", &kernel, &in.kernel_len, err, errlen);
	if (ret)
		return ret;
	in.kernel = kernel;
	if (vm->cfg.initrd) {
		ret = map_file(vm->cfg.initrd, "initrd", &initrd, &in.initrd_len, err, errlen);
		if (ret)
			goto out;
		in.initrd = initrd;
	}
	vm_describe_acpi(vm, &acpi);
	ret = acpi_build(&vm->mem, &acpi, &in.rsdp_gpa);
	if (ret) {
		snprintf(err, errlen, "building ACPI tables failed: %s", strerror_safe(-ret));
		goto out;
	}
	ret = boot_load(&vm->mem, &in, &vm->boot, err, errlen);
out:
	unmap_file(kernel, in.kernel_len);
	unmap_file(initrd, in.initrd_len);
	return ret;
}

void vm_add_device(struct vm *vm, struct device *dev, const struct device_ops *ops, const char *name)
{
	struct device **pp = &vm->devices;

	dev->ops = ops;
	dev->vm = vm;
	snprintf(dev->name, sizeof(dev->name), "%s", name);
	dev->next = NULL;
	while (*pp)
		pp = &(*pp)->next;
	*pp = dev;
}

/* @cpuid: the CPUID template to use (restore: the one the guest saw), or
 * NULL for what this host's KVM supports. */
static int vm_create_vcpus(struct vm *vm, const struct kvm_cpuid2 *cpuid)
{
	int ret = 0;

	if (cpuid) {
		size_t size = sizeof(*cpuid) + cpuid->nent * sizeof(cpuid->entries[0]);

		vm->cpuid = malloc(size);
		if (!vm->cpuid)
			return -ENOMEM;
		memcpy(vm->cpuid, cpuid, size);
	} else if (vm->cpuid_job) {
		ret = bgjob_finish(vm->cpuid_job, vm_fetch_cpuid, vm);
		vm->cpuid_job = NULL;
	} else {
		ret = vm_fetch_cpuid(vm);
	}

	if (ret)
		return ret;
	vm->vcpus = calloc(vm->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu_init(vm, &vm->vcpus[i], i);
		if (ret)
			return ret;
	}
	return 0;
}

/* Everything but the kernel: used by vm_create and by restore paths that
 * bring their own memory and state. */
int vm_create_bare(struct vm **out, const struct vm_config *cfg, struct guest_mem *mem,
		   char *err, size_t errlen)
{
	return vm_create_restore(out, cfg, mem, NULL, err, errlen);
}

int vm_create_restore(struct vm **out, const struct vm_config *cfg, struct guest_mem *mem,
		      const struct kvm_cpuid2 *cpuid, char *err, size_t errlen)
{
	struct vm_create_opts o = { .mem = mem, .cpuid = cpuid };

	return vm_create_with(out, cfg, &o, err, errlen);
}

int vm_create_with(struct vm **out, const struct vm_config *cfg, const struct vm_create_opts *o,
		   char *err, size_t errlen)
{
	static const struct vm_create_opts none;
	struct guest_mem *mem;
	struct vm *vm;
	int ret;

	if (!o)
		o = &none;
	mem = o->mem;
	*out = NULL;
	if (errlen)
		err[0] = '\0';
	ret = config_validate(cfg, err, errlen);
	if (ret)
		return ret;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->kvm_fd = vm->vm_fd = -1;
	vm->mem.fd = -1;
	vm->coalesced_timer = -1;
	pthread_mutex_init(&vm->coalesced_lock, NULL);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->state = VM_STATE_CREATED;
	vm->nr_vcpus = cfg->cpus;
	vm->start_ns = now_ns();
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	ret = evl_init(&vm->loop);
	if (ret)
		goto fail;
	ret = config_copy(&vm->cfg, cfg);
	if (ret)
		goto fail;
	ret = vcpu_signal_setup();
	if (ret)
		goto fail;
	ret = vm_open_kvm(vm, !o->cpuid, err, errlen);
	if (ret)
		goto fail_quiet;
	if (mem) {
		vm->mem = *mem;
		memset(mem, 0, sizeof(*mem));
		mem->fd = -1;
	} else {
		ret = mem_init(&vm->mem, cfg->memory_mib << 20);
		if (ret) {
			snprintf(err, errlen, "memory: cannot allocate %llu MiB of guest RAM: %s",
				 (unsigned long long)cfg->memory_mib, strerror_safe(-ret));
			goto fail_quiet;
		}
	}
	ret = vm_set_memslots(vm, 0);
	if (ret)
		goto fail;
	ret = vm_setup_irqchip(vm);
	if (ret)
		goto fail;
	vm->inherit = o->inherit;
	ret = vm_create_devices(vm, err, errlen);
	vm->inherit = NULL;
	if (ret)
		goto fail_quiet;
	ret = vm_create_vcpus(vm, o->cpuid);
	if (ret)
		goto fail;
	ret = vm_finish_jobs(vm);
	if (ret)
		goto fail;
	*out = vm;
	return 0;

fail:
	snprintf(err, errlen, "creating the VM failed: %s", strerror_safe(-ret));
fail_quiet:
	vm_destroy(vm);
	return ret;
}

int vm_create(struct vm **out, const struct vm_config *cfg, char *err, size_t errlen)
{
	struct vm *vm;
	int ret;

	ret = vm_create_bare(&vm, cfg, NULL, err, errlen);
	if (ret)
		return ret;
	ret = vm_load_kernel(vm, err, errlen);
	if (ret)
		goto fail;
	ret = vcpu_setup_boot(&vm->vcpus[0]);
	if (ret) {
		snprintf(err, errlen, "setting up the boot CPU failed: %s", strerror_safe(-ret));
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return ret;
}

/* Start the event loop and the vCPU threads from index @first on. */
static int vm_start_from(struct vm *vm, unsigned first)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_STATE_CREATED) {
		pthread_mutex_unlock(&vm->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&vm->lock);
	ret = evl_start(&vm->loop, "vmm-loop");
	if (ret)
		return ret;
	pthread_mutex_lock(&vm->lock);
	for (unsigned i = first; i < vm->nr_vcpus; i++) {
		ret = -pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
		if (ret) {
			vm->exit_requested = true;
			vm->exit_status = VM_EXIT_STATUS_VMM_ERROR;
			snprintf(vm->exit_reason, sizeof(vm->exit_reason), "cannot start vCPU thread %u", i);
			break;
		}
		vm->vcpus[i].thread_started = true;
		vm->nr_running_threads++;
	}
	vm->state = ret ? VM_STATE_SHUTDOWN : VM_STATE_RUNNING;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_start(struct vm *vm)
{
	return vm_start_from(vm, 0);
}

int vm_run_on_caller(struct vm *vm)
{
	struct vcpu *bsp = &vm->vcpus[0];
	int ret;

	pthread_mutex_lock(&vm->lock);
	/* Registered before the others start so kicks and counts see it. */
	bsp->thread = pthread_self();
	bsp->thread_started = true;
	bsp->on_caller = true;
	vm->nr_running_threads++;
	pthread_mutex_unlock(&vm->lock);
	ret = vm_start_from(vm, 1);
	if (ret) {
		pthread_mutex_lock(&vm->lock);
		bsp->thread_started = false;
		vm->nr_running_threads--;
		pthread_mutex_unlock(&vm->lock);
		return ret;
	}
	vcpu_thread(bsp);
	bsp->thread_started = false;
	return 0;
}

static void vm_kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

/* device_ops quiesce/unquiesce of every device (see device.h). */
static void vm_quiesce_devices(struct vm *vm, bool on)
{
	for (struct device *d = vm->devices; d; d = d->next) {
		void (*fn)(struct device *) = on ? d->ops->quiesce : d->ops->unquiesce;

		if (fn)
			fn(d);
	}
}

/* A pause is on the critical path of migration downtime, and a futex
 * wake-up costs 30-170 us on this kind of (virtualized) host: look for the
 * vCPUs to park for a while without sleeping, then fall back to waiting. */
#define VM_PAUSE_SPIN_NS (300 * 1000)

static void vm_spin_until_parked(struct vm *vm, unsigned want)
{
	uint64_t end = now_ns() + VM_PAUSE_SPIN_NS;

	/* Yielding, not pausing: the vCPU thread may share our CPU, and a plain
	 * spin would hold it off for the whole spin (measured: 300 us). */
	while (__atomic_load_n(&vm->nr_paused, __ATOMIC_ACQUIRE) < want && now_ns() < end)
		sched_yield();
}

static int vm_pause_vcpus(struct vm *vm)
{
	unsigned threads;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_STATE_RUNNING) {
		pthread_mutex_unlock(&vm->lock);
		return -EBUSY;
	}
	vm->pause_requested = true;
	threads = vm->nr_running_threads;
	pthread_mutex_unlock(&vm->lock);
	vm_kick_all(vm);
	vm_spin_until_parked(vm, threads);
	pthread_mutex_lock(&vm->lock);
	while (vm->nr_paused < vm->nr_running_threads && !vm->exit_requested)
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (vm->exit_requested) {
		vm->pause_requested = false;
		pthread_mutex_unlock(&vm->lock);
		return -ESHUTDOWN;
	}
	vm->state = VM_STATE_PAUSED;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

/* The vCPUs first (they may kick devices), then the device back ends. */
int vm_pause(struct vm *vm)
{
	int ret;

	pthread_mutex_lock(&vm->pause_lock);
	ret = vm_pause_vcpus(vm);
	if (!ret)
		vm_quiesce_devices(vm, true);
	pthread_mutex_unlock(&vm->pause_lock);
	return ret;
}

int vm_start_paused(struct vm *vm)
{
	int ret;

	pthread_mutex_lock(&vm->pause_lock);
	/* Before the event loop runs: no back end starts until vm_resume(). */
	vm_quiesce_devices(vm, true);
	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = true;
	pthread_mutex_unlock(&vm->lock);
	ret = vm_start(vm);
	pthread_mutex_lock(&vm->lock);
	if (ret) {
		vm->pause_requested = false;
		goto out;
	}
	/* No need to wait for the threads to park: pause_requested was set before
	 * they existed, and a vCPU thread checks it under vm->lock before every
	 * KVM_RUN, so none can run guest code until vm_resume(). Not waiting saves
	 * a scheduling round trip per vCPU on restore. */
	if (vm->exit_requested) {
		ret = -ESHUTDOWN;
		goto out;
	}
	vm->state = VM_STATE_PAUSED;
	pthread_cond_broadcast(&vm->cond);
out:
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_unlock(&vm->pause_lock);
	return ret;
}

/* The device back ends first: what the vCPUs kick from now on is served. */
int vm_resume(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->pause_lock);
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_STATE_PAUSED)
		ret = -EBUSY;
	pthread_mutex_unlock(&vm->lock);
	if (!ret) {
		vm_quiesce_devices(vm, false);
		pthread_mutex_lock(&vm->lock);
		vm->pause_requested = false;
		vm->state = VM_STATE_RUNNING;
		pthread_cond_broadcast(&vm->cond);
		pthread_mutex_unlock(&vm->lock);
	}
	pthread_mutex_unlock(&vm->pause_lock);
	return ret;
}

void vm_request_exit(struct vm *vm, int status, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	if (!vm->exit_requested) {
		vm->exit_requested = true;
		vm->exit_status = status;
		va_start(ap, fmt);
		vsnprintf(vm->exit_reason, sizeof(vm->exit_reason), fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	vm_kick_all(vm);
}

int vm_wait_exit(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	/* One kick per exit request suffices: immediate_exit stays set until a
	 * vCPU clears it under vm->lock, which it only does while no exit is pending. */
	while (!vm->exit_requested || vm->nr_running_threads > 0)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].thread_started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].thread_started = false;
		}
	}
	evl_stop(&vm->loop);
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_STATE_SHUTDOWN;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return vm->exit_status;
}

void vm_destroy(struct vm *vm)
{
	struct device *dev, *next;

	if (!vm)
		return;
	pthread_mutex_lock(&vm->lock);
	bool running = vm->nr_running_threads > 0;
	pthread_mutex_unlock(&vm->lock);
	if (running) {
		vm_request_exit(vm, 0, "VM destroyed");
		vm_wait_exit(vm);
	}
	/* A failed creation may leave steps out: no use running them now. */
	bgjob_cancel(vm->cpuid_job);
	bgjob_cancel(vm->pit_job);
	evl_destroy(&vm->loop);
	vm_coalesced_destroy(vm);
	for (dev = vm->devices; dev; dev = next) {
		next = dev->next;
		if (dev->ops->destroy)
			dev->ops->destroy(dev);
	}
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			vcpu_destroy(&vm->vcpus[i]);
		free(vm->vcpus);
	}
	free(vm->cpuid);
	irq_destroy(vm);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	mem_destroy(&vm->mem);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	config_free(&vm->cfg);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->pause_lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}
