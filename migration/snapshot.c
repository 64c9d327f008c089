/* Snapshot a paused VM to a directory and restore it in a fresh VM.
 * See snapshot.h for the directory layout and the guarantees. */
#include "migration/snapshot.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/config_json.h"
#include "devices/virtio_net.h"
#include "migration/state.h"
#include "migration/stream.h"
#include "migration/vcpu_state.h"
#include "migration/vm_state.h"
#include "vmm/cli.h"
#include "vmm/kvm.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define SNAPSHOT_CRC_PROP "crc32c"   /* root property: CRC32C of state.dtb */

#define DEVICE_STATE_VERSION_UNSET 0
#define MEMORY_CHUNK (64ULL << 20)   /* largest single pwrite/pread */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void snapshot_config_digest(const char *json, size_t len, char out[32])
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64: a mismatch detector, not a MAC */

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)json[i];
		h *= 0x100000001b3ULL;
	}
	snprintf(out, 32, "fnv1a64:%016llx", (unsigned long long)h);
}

static char host_vendor[13];

static void read_host_cpu_vendor(void)
{
	unsigned eax, ebx = 0, ecx = 0, edx = 0;

	__get_cpuid(0, &eax, &ebx, &ecx, &edx);
	memcpy(host_vendor, &ebx, 4);
	memcpy(host_vendor + 4, &edx, 4);
	memcpy(host_vendor + 8, &ecx, 4);
	host_vendor[12] = '\0';
}

/* Read once: CPUID traps to the hypervisor when the host is itself a
 * guest, which would otherwise be paid inside the migration downtime. */
static const char *host_cpu_vendor(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, read_host_cpu_vendor);
	return host_vendor;
}

int snapshot_prepare(struct vm *vm)
{
	const struct vcpu_state_caps *caps;

	host_cpu_vendor();
	return vcpu_state_caps_get(vm->kvm_fd, vm->vm_fd, &caps);
}

/* ------------------------------------------------------------ saving */

/* After an I/O or MMIO exit, the instruction completes only on the next
 * KVM_RUN (api.rst §5 "kvm_run": "...userspace can ensure that pending
 * operations are completed by re-entering with immediate_exit set"). A parked
 * vCPU may sit right after such an exit, so complete it before reading state.
 * One kicked out of KVM_RUN by a signal (EINTR) has nothing pending. */
static int complete_pending_io(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (!v->thread_started || !v->run || !v->exit_pending)
			continue;
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (__kvm_ioctl(v->fd, KVM_RUN, 0) == 0 || errno != EINTR) {
			log_err("snapshot", "cpu%u: completing pending I/O failed (exit %u)", i,
				v->run->exit_reason);
			return -EIO;
		}
		v->exit_pending = false;
	}
	return 0;
}

static int save_vcpus(struct vm *vm, struct state_node *root, char *err, size_t errlen)
{
	const struct vcpu_state_caps *caps;
	struct state_node *vcpus = state_add_node(root, "vcpus", 1);
	int ret;

	if (!vcpus)
		return -ENOMEM;
	ret = vcpu_state_caps_get(vm->kvm_fd, vm->vm_fd, &caps);
	if (ret) {
		snprintf(err, errlen, "snapshot: cannot query vCPU state capabilities: %s", strerror_safe(-ret));
		return ret;
	}
	for (unsigned i = 0; i < vm->nr_vcpus && !ret; i++) {
		char name[16];
		struct state_node *n;

		snprintf(name, sizeof(name), "cpu@%u", i);
		n = state_add_node(vcpus, name, VCPU_STATE_VERSION);
		ret = n ? vcpu_save(caps, vm->vcpus[i].fd, n) : -ENOMEM;
		if (ret)
			snprintf(err, errlen, "snapshot: cpu%u: saving vCPU state failed: %s", i,
				 strerror_safe(-ret));
	}
	return ret;
}

/* The CPUID template the guest was created with: restore hands it back to
 * KVM, so the guest keeps seeing the same CPU (and skips a slow query). */
#define SNAPSHOT_CPUID_MAX 4096

static int save_cpuid(struct vm *vm, struct state_node *root)
{
	struct state_node *n = state_add_node(root, "cpuid", 1);

	if (!n || !vm->cpuid)
		return -EINVAL;
	return state_put_bytes(n, "entries", vm->cpuid->entries,
			       vm->cpuid->nent * sizeof(vm->cpuid->entries[0]));
}

static int parse_cpuid(struct state_tree *t, struct kvm_cpuid2 **out)
{
	struct state_node root, n;
	const void *data;
	size_t len, count;

	*out = NULL;
	state_root(t, &root);
	if (state_child(&root, "cpuid", &n) || state_node_version(&n, 1, 1, NULL) ||
	    state_get_raw(&n, "entries", &data, &len))
		return -EINVAL;
	count = len / sizeof((*out)->entries[0]);
	if (len % sizeof((*out)->entries[0]) || count == 0 || count > SNAPSHOT_CPUID_MAX)
		return state_fail(&n, "property 'entries' has %zu bytes, expected 1..%d entries of %zu",
				  len, SNAPSHOT_CPUID_MAX, sizeof((*out)->entries[0]));
	*out = malloc(sizeof(**out) + len);
	if (!*out)
		return -ENOMEM;
	(*out)->nent = (uint32_t)count;
	(*out)->padding = 0;
	memcpy((*out)->entries, data, len);
	return 0;
}

struct device_save_ctx {
	struct vm *vm;
	struct state_node *devices;
	char *err;
	size_t errlen;
};

/* Runs on the event-loop thread, so device back ends are quiet meanwhile. */
static int save_devices_on_loop(void *arg)
{
	struct device_save_ctx *c = arg;

	for (struct device *d = c->vm->devices; d; d = d->next) {
		struct state_node *n;
		int ret;

		if (!d->ops->save) {
			snprintf(c->err, c->errlen, "snapshot: device '%s' (%s) cannot be saved", d->name,
				 d->ops->type);
			return -EOPNOTSUPP;
		}
		n = state_add_node(c->devices, d->name, DEVICE_STATE_VERSION_UNSET);
		if (!n || state_put_str(n, "type", d->ops->type)) {
			snprintf(c->err, c->errlen, "snapshot: device '%s': %s", d->name,
				 state_error(c->devices->tree));
			return -EINVAL;
		}
		n->has_version = false; /* the device must state its own version */
		ret = d->ops->save(d, n);
		if (ret || !n->has_version) {
			snprintf(c->err, c->errlen, "snapshot: device '%s' (%s): %s", d->name, d->ops->type,
				 ret ? (state_error(n->tree)[0] ? state_error(n->tree) : strerror_safe(-ret))
				     : "save() set no version");
			return ret ? ret : -EINVAL;
		}
	}
	return 0;
}

/* The state tree carries a CRC32C of the whole blob (computed with the
 * property itself zero) in its root, so any bit flip in state.dtb, also
 * inside a property value where the tree stays well formed, is refused. */
static void snapshot_seal_blob(void *blob, size_t len)
{
	if (fdt_setprop_inplace_u32(blob, 0, SNAPSHOT_CRC_PROP, 0) == 0)
		fdt_setprop_inplace_u32(blob, 0, SNAPSHOT_CRC_PROP, mig_crc32c(0, blob, len));
}

/* After fdt_check_full (state_tree_open) passed: compare the stored CRC. */
static int snapshot_check_seal(const void *blob, size_t len, char *err, size_t errlen)
{
	const fdt32_t *p;
	uint32_t want, got;
	void *copy;
	int plen;

	p = fdt_getprop(blob, 0, SNAPSHOT_CRC_PROP, &plen);
	if (!p || plen != 4) {
		snprintf(err, errlen, "state: /: property '%s' is missing", SNAPSHOT_CRC_PROP);
		return -EINVAL;
	}
	want = fdt32_to_cpu(*p);
	copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, blob, len);
	fdt_setprop_inplace_u32(copy, 0, SNAPSHOT_CRC_PROP, 0);
	got = mig_crc32c(0, copy, len);
	free(copy);
	if (got != want) {
		snprintf(err, errlen, "state: checksum mismatch (stored 0x%08x, computed 0x%08x): the file is damaged",
			 want, got);
		return -EINVAL;
	}
	return 0;
}

/* The parts of the tree this thread saves: the header, the vCPUs, the CPUID
 * template and the in-kernel irqchip/PIT/clock. */
static int build_cpu_part(struct vm *vm, struct state_node *root, const char *config_json, size_t config_len,
			  char *err, size_t errlen)
{
	struct vm_kstate ks;
	char digest[32];
	int ret;

	snapshot_config_digest(config_json, config_len, digest);
	ret = state_put_str(root, "vmm-version", VMM_VERSION);
	ret |= state_put_str(root, "host-cpu-vendor", host_cpu_vendor());
	ret |= state_put_str(root, "config-digest", digest);
	ret |= state_put_u64(root, "memory-size", vm->mem.size);
	ret |= state_put_u32(root, "nr-vcpus", vm->nr_vcpus);
	/* Filled in once the blob is final (snapshot_seal_blob). */
	ret |= state_put_u32(root, SNAPSHOT_CRC_PROP, 0);
	if (ret)
		return -ENOMEM;
	ret = complete_pending_io(vm);
	if (ret) {
		snprintf(err, errlen, "snapshot: cannot bring the vCPUs to a clean point");
		return ret;
	}
	ret = save_vcpus(vm, root, err, errlen);
	if (!ret)
		ret = save_cpuid(vm, root);
	if (ret)
		return ret;
	ret = vm_kstate_read(vm->vm_fd, true, true, &ks);
	if (!ret)
		ret = vm_kstate_save(&ks, root);
	if (ret)
		snprintf(err, errlen, "snapshot: saving irqchip/PIT/clock failed: %s", strerror_safe(-ret));
	return ret;
}

int snapshot_build_tree(struct vm *vm, const char *config_json, size_t config_len,
			struct state_tree **out, char *err, size_t errlen)
{
	struct state_tree *t = state_tree_new(), *dt = state_tree_new();
	char derr[512] = "";
	struct device_save_ctx dctx = { .vm = vm, .devices = state_tree_root(dt), .err = derr,
					.errlen = sizeof(derr) };
	struct evl_call call;
	int ret, dret;

	*out = NULL;
	if (!t || !dt || state_set_version(dctx.devices, 1)) {
		state_tree_free(t);
		state_tree_free(dt);
		return -ENOMEM;
	}
	/* The devices are saved on the event loop (their back ends are quiet
	 * there) while this thread reads the vCPUs and KVM: on two CPUs the
	 * loop's wake-up and the device saves leave the downtime. Each side
	 * writes its own tree and error buffer; the devices' is grafted on. */
	evl_post(&vm->loop, &call, save_devices_on_loop, &dctx);
	ret = build_cpu_part(vm, state_tree_root(t), config_json, config_len, err, errlen);
	dret = evl_wait(&vm->loop, &call);
	if (!ret && dret) {
		snprintf(err, errlen, "%s", derr);
		ret = dret;
	}
	if (!ret)
		ret = state_graft(state_tree_root(t), "devices", dt);
	else
		state_tree_free(dt);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "snapshot: %s",
				 state_error(t)[0] ? state_error(t) : strerror_safe(-ret));
		state_tree_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < MEM_PAGE_SIZE / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* All of [@off, @off + @len) of @fd read into (@write false) or written
 * from @buf, in chunks of at most MEMORY_CHUNK. */
static int file_io_all(int fd, uint8_t *buf, uint64_t len, uint64_t off, bool write)
{
	while (len) {
		size_t n = len > MEMORY_CHUNK ? MEMORY_CHUNK : len;
		ssize_t r = write ? pwrite(fd, buf, n, (off_t)off) : pread(fd, buf, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		buf += r;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

/* Write the non-zero pages of [start, end) at the same offsets; zero pages
 * stay holes. */
static int write_nonzero_pages(const struct guest_mem *mem, int fd, uint64_t start, uint64_t end,
			       uint64_t *written)
{
	uint64_t run = start;

	for (uint64_t off = start; off <= end; off += MEM_PAGE_SIZE) {
		bool zero = off == end || page_is_zero(mem->base + off);

		if (zero) {
			if (off > run) {
				int ret = file_io_all(fd, mem->base + run, off - run, run, true);

				if (ret)
					return ret;
				*written += off - run;
			}
			run = off + MEM_PAGE_SIZE;
		}
	}
	return 0;
}

/* Guest RAM as a sparse file. With a memfd, SEEK_DATA/SEEK_HOLE skip the
 * ranges the guest never touched without reading them. */
static int write_memory(const struct guest_mem *mem, int fd, uint64_t *written)
{
	uint64_t off = 0;
	int ret;

	*written = 0;
	if (ftruncate(fd, (off_t)mem->size) < 0)
		return -errno;
	while (off < mem->size) {
		uint64_t data = off, end = mem->size;

		if (mem->fd >= 0) {
			off_t d = lseek(mem->fd, (off_t)off, SEEK_DATA);

			if (d < 0 && errno == ENXIO)
				break; /* only holes remain */
			if (d >= 0) {
				off_t h = lseek(mem->fd, d, SEEK_HOLE);

				data = (uint64_t)d & ~(MEM_PAGE_SIZE - 1);
				end = h < 0 || (uint64_t)h > mem->size ? mem->size : (uint64_t)h;
			}
		}
		end = (end + MEM_PAGE_SIZE - 1) & ~(MEM_PAGE_SIZE - 1);
		if (end > mem->size)
			end = mem->size;
		ret = write_nonzero_pages(mem, fd, data, end, written);
		if (ret)
			return ret;
		off = end;
	}
	return 0;
}

static int write_file(const char *dir, const char *name, const void *data, size_t len,
		      char *err, size_t errlen)
{
	char tmp[4096], path[4096];
	int fd, ret;

	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "snapshot: cannot create '%s': %s", tmp, strerror_safe(errno));
		return ret;
	}
	ret = file_io_all(fd, (uint8_t *)data, len, 0, true);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "snapshot: writing '%s' failed: %s", path, strerror_safe(-ret));
		unlink(tmp);
	}
	return ret;
}

static int save_memory_file(const struct guest_mem *mem, const char *dir, uint64_t *written,
			    char *err, size_t errlen)
{
	char tmp[4096], path[4096];
	int fd, ret;

	snprintf(tmp, sizeof(tmp), "%s/.memory.tmp", dir);
	snprintf(path, sizeof(path), "%s/memory", dir);
	/* A new inode each time: a lazily restored VM may still map the old one. */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "snapshot: cannot create '%s': %s", tmp, strerror_safe(errno));
		return ret;
	}
	ret = write_memory(mem, fd, written);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "snapshot: writing '%s' failed: %s", path, strerror_safe(-ret));
		unlink(tmp);
	}
	return ret;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int snapshot_save(struct vm *vm, const char *dir, struct snapshot_stats *stats, char *err,
		  size_t errlen)
{
	struct snapshot_stats local = { 0 };
	struct state_tree *t = NULL;
	cJSON *cfg_json = NULL;
	char *config = NULL;
	void *blob = NULL;
	size_t blob_len;
	uint64_t t0 = now_ns(), t1;
	enum vm_state state;
	int ret;

	if (errlen)
		err[0] = '\0';
	if (!stats)
		stats = &local;
	pthread_mutex_lock(&vm->lock);
	state = vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (state != VM_STATE_PAUSED && state != VM_STATE_CREATED) {
		snprintf(err, errlen, "snapshot: the VM is %s; pause it first", vm_state_name(state));
		return -EBUSY;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "snapshot: cannot create directory '%s': %s", dir, strerror_safe(errno));
		return ret;
	}
	cfg_json = config_to_json(&vm->cfg);
	config = cfg_json ? cJSON_Print(cfg_json) : NULL;
	if (!config) {
		ret = -ENOMEM;
		snprintf(err, errlen, "snapshot: out of memory");
		goto out;
	}
	ret = snapshot_build_tree(vm, config, strlen(config), &t, err, errlen);
	if (ret)
		goto out;
	ret = state_tree_finish(t, &blob, &blob_len);
	if (!ret)
		snapshot_seal_blob(blob, blob_len);
	if (ret) {
		snprintf(err, errlen, "snapshot: %s", state_error(t));
		goto out;
	}
	t1 = now_ns();
	stats->state_ns = t1 - t0;
	ret = save_memory_file(&vm->mem, dir, &stats->memory_bytes_written, err, errlen);
	if (ret)
		goto out;
	stats->memory_ns = now_ns() - t1;
	ret = write_file(dir, "config.json", config, strlen(config), err, errlen);
	if (!ret)
		ret = write_file(dir, "state.dtb", blob, blob_len, err, errlen);
	if (!ret && (ret = fsync_dir(dir)) < 0)
		snprintf(err, errlen, "snapshot: fsync of '%s' failed: %s", dir, strerror_safe(-ret));
	stats->total_ns = now_ns() - t0;
out:
	free(blob);
	state_tree_free(t);
	free(config);
	cJSON_Delete(cfg_json);
	return ret;
}

/* ---------------------------------------------------------- restoring */

static int read_small_file(const char *dir, const char *name, size_t max, char **data, size_t *len,
			   char *err, size_t errlen)
{
	char path[4096];
	struct stat st;
	size_t off = 0;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "restore: cannot open '%s': %s", path, strerror_safe(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		snprintf(err, errlen, "restore: '%s' is not a regular file of at most %zu bytes", path, max);
		close(fd);
		return -EINVAL;
	}
	*len = (size_t)st.st_size;
	*data = malloc(*len + 1);
	if (!*data) {
		close(fd);
		return -ENOMEM;
	}
	while (off < *len) {
		ssize_t n = read(fd, *data + off, *len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			snprintf(err, errlen, "restore: reading '%s' failed", path);
			free(*data);
			*data = NULL;
			break;
		}
		off += (size_t)n;
	}
	if (!ret)
		(*data)[*len] = '\0';
	close(fd);
	return ret;
}

/* Root checks that need no KVM: format, host, config and sizes agree. */
static int check_root(struct state_tree *t, const char *config, size_t config_len,
		      const struct vm_config *cfg, char *err, size_t errlen)
{
	struct state_node root;
	char vendor[13], digest[40], want_digest[32];
	const char *want_vendor = host_cpu_vendor();
	uint64_t mem_size;
	uint32_t nr_vcpus;

	state_root(t, &root);
	if (state_get_str(&root, "host-cpu-vendor", vendor, sizeof(vendor)) ||
	    state_get_str(&root, "config-digest", digest, sizeof(digest)) ||
	    state_get_u64(&root, "memory-size", &mem_size) ||
	    state_get_u32(&root, "nr-vcpus", &nr_vcpus)) {
		snprintf(err, errlen, "restore: %s", state_error(t));
		return -EINVAL;
	}
	if (strcmp(vendor, want_vendor)) {
		snprintf(err, errlen, "restore: snapshot taken on a %s host, this host is %s", vendor,
			 want_vendor);
		return -EINVAL;
	}
	snapshot_config_digest(config, config_len, want_digest);
	if (strcmp(digest, want_digest)) {
		snprintf(err, errlen, "restore: config.json does not match the state (digest %s, state says %s)",
			 want_digest, digest);
		return -EINVAL;
	}
	if (mem_size != cfg->memory_mib << 20 || nr_vcpus != cfg->cpus) {
		snprintf(err, errlen, "restore: state has %u vCPUs and %llu bytes of RAM, config says %u and %llu",
			 nr_vcpus, (unsigned long long)mem_size, cfg->cpus,
			 (unsigned long long)(cfg->memory_mib << 20));
		return -EINVAL;
	}
	return 0;
}

struct device_load_ctx {
	struct vm *vm;
	const struct state_node *devices;
	char *err;
	size_t errlen;
};

static int load_devices_on_loop(void *arg)
{
	struct device_load_ctx *c = arg;
	struct state_node n;
	unsigned nr_nodes = 0, nr_devs = 0;
	int r;

	/* Every node must belong to a device of this VM, and vice versa. */
	for (r = state_child_first(c->devices, &n); r == 0; r = state_child_next(&n)) {
		const char *name = state_node_name(&n);
		bool found = false;

		for (struct device *d = c->vm->devices; d && !found; d = d->next)
			found = !strcmp(d->name, name);
		if (!found) {
			char path[128];

			state_node_path(&n, path, sizeof(path));
			snprintf(c->err, c->errlen, "restore: state: %s: no such device in this VM", path);
			return -EINVAL;
		}
		nr_nodes++;
	}
	for (struct device *d = c->vm->devices; d; d = d->next) {
		char type[32];
		int ret;

		nr_devs++;
		if (state_child(c->devices, d->name, &n) || state_get_str(&n, "type", type, sizeof(type)))
			goto tree_error;
		if (strcmp(type, d->ops->type)) {
			state_fail(&n, "property 'type' is \"%s\", this VM's device is \"%s\"", type,
				   d->ops->type);
			goto tree_error;
		}
		if (!d->ops->load) {
			snprintf(c->err, c->errlen, "restore: device '%s' (%s) cannot be restored", d->name,
				 d->ops->type);
			return -EOPNOTSUPP;
		}
		ret = d->ops->load(d, &n);
		if (ret) {
			if (state_error(n.tree)[0])
				goto tree_error;
			snprintf(c->err, c->errlen, "restore: device '%s' (%s): %s", d->name, d->ops->type,
				 strerror_safe(-ret));
			return ret;
		}
	}
	(void)nr_nodes;
	(void)nr_devs;
	return 0;
tree_error:
	snprintf(c->err, c->errlen, "restore: %s", state_error(c->devices->tree));
	return -EINVAL;
}

static int parse_vcpus(struct vm *vm, const struct state_node *root, struct vcpu_state *vs,
		       const struct vcpu_state_caps *caps)
{
	struct state_node vcpus, c;
	unsigned count = 0;
	int r;

	if (state_child(root, "vcpus", &vcpus) || state_node_version(&vcpus, 1, 1, NULL))
		return -EINVAL;
	for (r = state_child_first(&vcpus, &c); r == 0; r = state_child_next(&c))
		count++;
	if (count != vm->nr_vcpus)
		return state_fail(&vcpus, "%u cpu nodes, expected %u", count, vm->nr_vcpus);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		char name[16];

		snprintf(name, sizeof(name), "cpu@%u", i);
		if (state_child(&vcpus, name, &c) || vcpu_state_parse(caps, &c, &vs[i])) {
			while (i--)
				vcpu_state_free(&vs[i]);
			return -EINVAL;
		}
	}
	return 0;
}

int snapshot_apply_tree(struct vm *vm, const void *blob, size_t len, const char *config_json,
			size_t config_len, char *err, size_t errlen)
{
	const struct vcpu_state_caps *caps;
	struct vcpu_state *vs = NULL;
	struct state_tree *t = NULL;
	struct state_node root, devices;
	struct device_load_ctx dctx = { .vm = vm, .err = err, .errlen = errlen };
	struct vm_kstate ks;
	bool parsed = false;
	int ret;

	ret = state_tree_open(&t, blob, len, err, errlen);
	if (ret)
		return ret; /* snapshot_restore opened it once already; migration prefixes itself */
	ret = check_root(t, config_json, config_len, &vm->cfg, err, errlen);
	if (ret)
		goto out;
	ret = vcpu_state_caps_get(vm->kvm_fd, vm->vm_fd, &caps);
	if (ret) {
		snprintf(err, errlen, "restore: cannot query vCPU state capabilities: %s", strerror_safe(-ret));
		goto out;
	}
	vs = calloc(vm->nr_vcpus, sizeof(*vs));
	if (!vs) {
		ret = -ENOMEM;
		goto out;
	}
	/* Parse and check everything first ... */
	state_root(t, &root);
	ret = parse_vcpus(vm, &root, vs, caps);
	if (ret)
		goto tree_error;
	parsed = true;
	ret = vm_kstate_parse(&root, &ks);
	if (!ret)
		ret = state_child(&root, "devices", &devices);
	if (!ret)
		ret = state_node_version(&devices, 1, 1, NULL);
	if (ret)
		goto tree_error;
	/* ... then apply: devices (they may drive IRQ lines), the in-kernel
	 * irqchip/PIT/clock (which then hold the saved line state), and the vCPUs. */
	dctx.devices = &devices;
	ret = evl_call(&vm->loop, load_devices_on_loop, &dctx);
	if (ret)
		goto out;
	ret = vm_kstate_write(vm->vm_fd, &ks);
	if (ret) {
		snprintf(err, errlen, "restore: KVM refused the irqchip/PIT/clock state: %s", strerror_safe(-ret));
		goto out;
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu_state_write(vm->vcpus[i].fd, &vs[i]);
		if (ret) {
			snprintf(err, errlen, "restore: KVM refused the state of cpu%u: %s", i, strerror_safe(-ret));
			goto out;
		}
	}
	/* Only now may the NICs deliver interrupts (the LAPICs hold their
	 * restored state) and ask the guest to announce itself. */
	virtio_net_restore_done_all(vm);
	goto out;
tree_error:
	snprintf(err, errlen, "restore: %s", state_error(t)[0] ? state_error(t) : strerror_safe(-ret));
out:
	if (vs && parsed)
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			vcpu_state_free(&vs[i]);
	free(vs);
	state_tree_free(t);
	return ret;
}

/* Copy only the data extents of the sparse file into fresh memfd RAM. */
static int memory_copy_in(struct guest_mem *mem, int fd)
{
	uint64_t off = 0;

	while (off < mem->size) {
		off_t d = lseek(fd, (off_t)off, SEEK_DATA), h;
		int ret;

		if (d < 0)
			return errno == ENXIO ? 0 : -errno;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0 || (uint64_t)h > mem->size)
			h = (off_t)mem->size;
		ret = file_io_all(fd, mem->base + d, (uint64_t)(h - d), (uint64_t)d, false);
		if (ret)
			return ret;
		off = (uint64_t)h;
	}
	return 0;
}

static int open_memory(const char *dir, uint64_t size, enum snapshot_memory_mode mode,
		       struct guest_mem *mem, char *err, size_t errlen)
{
	char path[4096];
	struct stat st;
	uint8_t *base;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/memory", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "restore: cannot open '%s': %s", path, strerror_safe(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
		snprintf(err, errlen, "restore: '%s' has %lld bytes, expected %llu (the VM's RAM)", path,
			 (long long)st.st_size, (unsigned long long)size);
		close(fd);
		return -EINVAL;
	}
	if (mode == SNAPSHOT_MEMORY_LAZY) {
		/* Private: the guest's writes never reach the snapshot file. */
		base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
		close(fd);
		if (base == MAP_FAILED) {
			ret = -errno;
			snprintf(err, errlen, "restore: cannot map '%s': %s", path, strerror_safe(errno));
			return ret;
		}
		ret = mem_init_from_mapping(mem, -1, base, size);
		if (ret) {
			munmap(base, size);
			snprintf(err, errlen, "restore: out of memory");
		}
		return ret;
	}
	ret = mem_init(mem, size);
	if (ret) {
		close(fd);
		snprintf(err, errlen, "restore: cannot allocate %llu MiB of guest RAM", (unsigned long long)(size >> 20));
		return ret;
	}
	ret = memory_copy_in(mem, fd);
	close(fd);
	if (ret) {
		mem_destroy(mem);
		snprintf(err, errlen, "restore: reading '%s' failed: %s", path, strerror_safe(-ret));
	}
	return ret;
}

static int apply_overrides(struct vm_config *cfg, const struct snapshot_restore_opts *opts,
			   char *err, size_t errlen)
{
	for (unsigned i = 0; i < CONFIG_MAX_NETS; i++) {
		if (!opts->has_tap[i])
			continue;
		if (i >= cfg->nr_nets) {
			snprintf(err, errlen, "restore: TAP override for net %u, but the VM has %u", i, cfg->nr_nets);
			return -EINVAL;
		}
		snprintf(cfg->nets[i].ifname, sizeof(cfg->nets[i].ifname), "%s", opts->tap[i]);
	}
	if (opts->has_console) {
		cfg->console = opts->console;
		free(cfg->console_path);
		cfg->console_path = opts->console_path ? strdup(opts->console_path) : NULL;
		if (opts->console_path && !cfg->console_path)
			return -ENOMEM;
	}
	return 0;
}

int snapshot_restore(struct vm **out, const char *dir, const struct snapshot_restore_opts *opts,
		     char *err, size_t errlen)
{
	static const struct snapshot_restore_opts defaults = { .memory = SNAPSHOT_MEMORY_LAZY };
	struct vm_config cfg;
	struct guest_mem mem = { .fd = -1 };
	char *config = NULL, *blob = NULL, cerr[STATE_ERR_MAX];
	size_t config_len, blob_len;
	struct state_tree *t = NULL;
	struct kvm_cpuid2 *cpuid = NULL;
	struct vm *vm = NULL;
	int ret;

	*out = NULL;
	if (errlen)
		err[0] = '\0';
	if (!opts)
		opts = &defaults;
	config_init(&cfg);
	ret = read_small_file(dir, "config.json", SNAPSHOT_CONFIG_MAX, &config, &config_len, err, errlen);
	if (!ret)
		ret = read_small_file(dir, "state.dtb", STATE_MAX_SIZE, &blob, &blob_len, err, errlen);
	if (ret)
		goto out;
	ret = config_from_json(&cfg, config, config_len, cerr, sizeof(cerr));
	if (ret) {
		snprintf(err, errlen, "restore: %s/config.json: %s", dir, cerr);
		goto out;
	}
	/* Check the tree's root before spending anything on a VM. */
	ret = state_tree_open(&t, blob, blob_len, cerr, sizeof(cerr));
	if (!ret)
		ret = snapshot_check_seal(blob, blob_len, cerr, sizeof(cerr));
	if (ret)
		snprintf(err, errlen, "restore: %s/state.dtb: %s", dir, cerr);
	else
		ret = check_root(t, config, config_len, &cfg, err, errlen);
	if (ret)
		goto out;
	ret = parse_cpuid(t, &cpuid);
	if (ret) {
		snprintf(err, errlen, "restore: %s", state_error(t)[0] ? state_error(t) : strerror_safe(-ret));
		goto out;
	}
	ret = apply_overrides(&cfg, opts, err, errlen);
	if (ret)
		goto out;
	ret = open_memory(dir, cfg.memory_mib << 20, opts->memory, &mem, err, errlen);
	if (ret)
		goto out;
	ret = vm_create_restore(&vm, &cfg, &mem, cpuid, err, errlen);
	if (ret) {
		mem_destroy(&mem); /* still ours if creation failed before taking it */
		goto out;
	}
	ret = snapshot_apply_tree(vm, blob, blob_len, config, config_len, err, errlen);
	if (ret)
		goto out;
	ret = vm_start_paused(vm);
	if (ret) {
		snprintf(err, errlen, "restore: cannot start the vCPU threads: %s", strerror_safe(-ret));
		goto out;
	}
	*out = vm;
	vm = NULL;
out:
	vm_destroy(vm);
	free(cpuid);
	state_tree_free(t);
	free(blob);
	free(config);
	config_free(&cfg);
	return ret;
}
