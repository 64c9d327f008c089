/* The destination side of live migration and live update. See migrate.h.
 *
 * Nothing of the guest runs (no vCPU, no device back end, no guest-RAM write)
 * until the whole stream has arrived, the state has been applied, our ready
 * ACK has gone out and the source's COMMIT has come in; every failure before
 * that tells the source why (an ERROR frame, if it still listens) and
 * destroys what was built. */
#include "migration/migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "api/config_json.h"
#include "migration/page_rx.h"
#include "migration/populate.h"
#include "migration/snapshot.h"
#include "migration/stream.h"
#include "migration/transport.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define MIG_DEFAULT_FRAME_TIMEOUT_MS 30000
#define MIG_DRAIN_MS 2000
#define MIG_PREFAULT_SYNC_MS 20000   /* below the source's 30 s wait for our ACK */

struct in_lane {
	struct mig_stream s;
	struct mig_incoming *in;
	pthread_t thread;
	bool thread_started;
	bool ended;                  /* LANE_END seen */
	int ret;
	struct page_rx rx;           /* its PAGES frames into RAM */
	struct populate_helper populate; /* in place: faults this lane's frames in from their far end */
};

struct mig_incoming {
	const struct mig_incoming_opts *o;
	struct mig_hello hello;
	unsigned nr_lanes;
	struct in_lane lanes[MIG_MAX_LANES];
	struct guest_mem mem;        /* until the VM takes it */
	struct prefault_job prefault; /* --prefault threads, joined with the lanes */
	bool prefault_started;
	struct page_ram ram;         /* RAM as the page receivers see it (page_rx.h) */
	struct vm_inherit inherit;   /* live update: TAP fds, until the NICs take them */
	struct vm *vm;
	char *config;
	size_t config_len;
	void *state;
	size_t state_len;
	bool leave_paused;
	char err[MIG_ERROR_MAX];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ pages */

/* The next frame on @l: PAGES are received into guest RAM right here
 * (f->type says MIG_PAGES, nothing left to do), anything else whole into @f. */
static int next_frame(struct mig_incoming *in, struct in_lane *l, uint32_t allowed, struct mig_frame *f)
{
	struct mig_rx rx;
	int ret = mig_recv_begin(&l->s, &rx, allowed);

	if (ret)
		return ret;
	if (rx.type != MIG_PAGES)
		return mig_recv_whole(&l->s, &rx, f);
	memset(f, 0, sizeof(*f));
	f->type = MIG_PAGES;
	if (in->hello.features & MIG_FEAT_LOCAL) {
		snprintf(l->s.err, sizeof(l->s.err), "PAGES frame in a live update (memory is shared)");
		return -EPROTO;
	}
	return page_rx_frame(&l->rx, &l->s, &rx, &in->ram);
}

/* What any connection may carry while pages arrive. */
static uint32_t page_frame_types(const struct mig_incoming *in)
{
	return MIG_TYPE_BIT(MIG_PAGES) | (in->hello.features & MIG_FEAT_SYNC ? MIG_TYPE_BIT(MIG_SYNC) : 0);
}

/* SYNC: every frame before it on this connection is in RAM; say so there. */
static int answer_sync(struct in_lane *l, const struct mig_frame *f)
{
	if (f->len != 8) {
		snprintf(l->s.err, sizeof(l->s.err), "SYNC frame of %zu bytes", f->len);
		return -EPROTO;
	}
	return mig_send(&l->s, MIG_SYNC, f->data, 8);
}

/* Extra connections carry only pages (and SYNCs), until LANE_END. */
static void *lane_thread(void *arg)
{
	struct in_lane *l = arg;
	struct mig_frame f;

	do {
		l->ret = next_frame(l->in, l, page_frame_types(l->in) | MIG_TYPE_BIT(MIG_LANE_END), &f);
		if (!l->ret && f.type == MIG_SYNC)
			l->ret = answer_sync(l, &f);
	} while (!l->ret && f.type != MIG_LANE_END);
	l->ended = !l->ret;
	return NULL;
}

/* ------------------------------------------------------------ setup */

static int refuse(struct mig_incoming *in, int ret, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(struct mig_incoming *in, int ret, const char *fmt, ...)
{
	va_list ap;

	if (!in->err[0]) {
		va_start(ap, fmt);
		vsnprintf(in->err, sizeof(in->err), fmt, ap);
		va_end(ap);
	}
	return ret ? ret : -EPROTO;
}

static int accept_lanes(struct mig_incoming *in, int lfd)
{
	const struct mig_incoming_opts *o = in->o;
	int timeout = o->frame_timeout_ms;
	struct mig_frame f;
	char err[256] = "";
	int ret, fd;

	fd = mig_accept(lfd, o->accept_timeout_ms > 0 ? o->accept_timeout_ms : -1, o->cancel_fd, err,
			sizeof(err));
	if (fd < 0)
		return refuse(in, fd, "%s", err);
	mig_stream_init(&in->lanes[0].s, fd);
	in->lanes[0].s.recv_timeout_ms = timeout;
	in->nr_lanes = 1;
	ret = mig_recv(&in->lanes[0].s, &f, MIG_TYPE_BIT(MIG_HELLO));
	if (!ret)
		ret = mig_hello_decode(f.data, f.len, &in->hello, in->lanes[0].s.err, sizeof(in->lanes[0].s.err));
	if (!ret && in->hello.lane_index != 0) {
		snprintf(in->lanes[0].s.err, sizeof(in->lanes[0].s.err), "first connection claims lane %u",
			 in->hello.lane_index);
		ret = -EPROTO;
	}
	if (ret)
		return refuse(in, ret, "HELLO: %s", in->lanes[0].s.err);
	ret = mig_send(&in->lanes[0].s, MIG_ACK, NULL, 0);
	if (ret)
		return refuse(in, ret, "%s", in->lanes[0].s.err);
	for (unsigned i = 1; i < in->hello.lanes; i++) {
		struct mig_hello h;
		struct in_lane *l = &in->lanes[i];

		fd = mig_accept(lfd, timeout, o->cancel_fd, err, sizeof(err));
		if (fd < 0)
			return refuse(in, fd, "connection %u: %s", i, err);
		mig_stream_init(&l->s, fd);
		l->s.recv_timeout_ms = timeout;
		l->in = in;
		in->nr_lanes++;
		ret = mig_recv(&l->s, &f, MIG_TYPE_BIT(MIG_HELLO));
		if (!ret)
			ret = mig_hello_decode(f.data, f.len, &h, l->s.err, sizeof(l->s.err));
		if (ret)
			return refuse(in, ret, "connection %u: HELLO: %s", i, l->s.err);
		if (h.session != in->hello.session || h.lane_index != i || h.lanes != in->hello.lanes)
			return refuse(in, -EPROTO, "connection %u: belongs to another session or lane (%u)", i,
				      h.lane_index);
	}
	return 0;
}

static int memory_from_fd(struct mig_incoming *in, int fd)
{
	struct stat st;
	void *base;

	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < in->hello.mem_size) {
		close(fd);
		return refuse(in, -EINVAL, "the memory fd is smaller than the %llu bytes of RAM announced",
			      (unsigned long long)in->hello.mem_size);
	}
	base = mmap(NULL, in->hello.mem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (base == MAP_FAILED) {
		int ret = -errno;
		close(fd);
		return refuse(in, ret, "cannot map the memory fd: %s", strerror_safe(-ret));
	}
	if (mem_init_from_mapping(&in->mem, fd, base, in->hello.mem_size)) {
		munmap(base, in->hello.mem_size);
		close(fd);
		in->mem.fd = -1;
		return refuse(in, -ENOMEM, "out of memory");
	}
	return 0;
}

/* Join --prefault threads still running (before RAM goes away or is used). */
static void prefault_join(struct mig_incoming *in)
{
	if (!in->prefault_started)
		return;
	int ret = prefault_finish(&in->prefault);

	if (ret)
		log_warn("migrate", "prefault stopped early: %s (the stream wrote its pages anyway)",
			 strerror_safe(-ret));
	in->prefault_started = false;
}

/* --prefault: fault all of RAM in on every CPU before the CONFIG ACK, so a
 * host without the memory fails here, before the first page. The source
 * waits for that ACK at most 30 s, so past MIG_PREFAULT_SYNC_MS the rest goes
 * on in the background while pages arrive (joined before the state). */
static int memory_prefault(struct mig_incoming *in)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t t0 = now_ns();
	/* Pages written with pwrite() are never read through the mapping. */
	int ret = prefault_start(&in->prefault, in->mem.base, in->mem.size, cpus > 0 ? (unsigned)cpus : 1,
				 in->ram.mode == PAGE_RX_IN_PLACE);

	if (!ret) {
		in->prefault_started = true;
		ret = prefault_wait(&in->prefault, MIG_PREFAULT_SYNC_MS);
	}
	if (ret == -ETIMEDOUT) {
		/* The stream may punch holes (zero pages) from now on. */
		prefault_stop_touching(&in->prefault);
		log_info("migrate", "prefault of %llu MiB not done in %u s; the rest goes on during the stream",
			 (unsigned long long)(in->mem.size >> 20), MIG_PREFAULT_SYNC_MS / 1000);
		return 0;
	}
	if (ret)
		return refuse(in, ret, "cannot prefault %llu MiB of guest RAM: %s",
			      (unsigned long long)(in->mem.size >> 20),
			      ret == -EINVAL   ? "this kernel lacks MADV_POPULATE_WRITE (Linux 5.14)"
			      : ret == -EFAULT ? "the memory directory's file system is full"
					       : strerror_safe(-ret));
	log_info("migrate", "prefaulted %llu MiB of guest RAM in %llu ms", (unsigned long long)(in->mem.size >> 20),
		 (unsigned long long)((now_ns() - t0) / 1000000));
	if (in->ram.reserved)
		memset(in->ram.reserved, 0xff, in->mem.size / MIG_PAGE_SIZE / 64 * sizeof(uint64_t));
	return 0;
}

/* Fresh RAM: a memfd, or an unlinked file in opts.memory_dir. */
static int memory_fresh(struct mig_incoming *in)
{
	const char *dir = in->o->memory_dir;
	int fd, ret;

	if (!dir) {
		ret = mem_init(&in->mem, in->hello.mem_size);
		return ret ? refuse(in, ret, "cannot allocate %llu MiB of guest RAM: %s",
				    (unsigned long long)(in->hello.mem_size >> 20), strerror_safe(-ret))
			   : 0;
	}
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return refuse(in, -errno, "memory_dir %s: %s", dir, strerror_safe(errno));
	if (ftruncate(fd, (off_t)in->hello.mem_size) < 0) {
		ret = -errno;
		close(fd);
		return refuse(in, ret, "memory_dir %s: %s", dir, strerror_safe(-ret));
	}
	return memory_from_fd(in, fd);
}

/* One NETFDS frame (live update): the queue fds of one NIC. */
static int take_net_fds(struct mig_incoming *in, struct mig_frame *f)
{
	struct vm_inherit_net *n;
	uint32_t idx, count;

	if (f->len != MIG_NETFDS_SIZE) {
		mig_frame_close_fds(f);
		return refuse(in, -EPROTO, "NETFDS frame of %zu bytes", f->len);
	}
	idx = mig_get_u32(f->data);
	count = mig_get_u32(f->data + 4);
	if (idx >= CONFIG_MAX_NETS || count != f->nr_fds || count > VM_INHERIT_MAX_FDS ||
	    mig_get_u32(f->data + 12) || in->inherit.nets[idx].nr_fds) {
		mig_frame_close_fds(f);
		return refuse(in, -EPROTO, "NETFDS frame for net %u: %u fds announced, %u came (or a repeat)",
			      idx, count, f->nr_fds);
	}
	n = &in->inherit.nets[idx];
	for (unsigned i = 0; i < count; i++)
		n->fds[i] = f->fds[i];
	n->nr_fds = count;
	n->tun_offloads = mig_get_u32(f->data + 8);
	f->nr_fds = 0;
	return 0;
}

/* A live update hands over every NIC's queues, and only those. */
static int check_net_fds(struct mig_incoming *in, const struct vm_config *cfg)
{
	for (unsigned i = 0; i < CONFIG_MAX_NETS; i++) {
		bool have = in->inherit.nets[i].nr_fds > 0;

		if (i < cfg->nr_nets && !have)
			return refuse(in, -EPROTO, "live update without the fds of net%u (TAP '%s')", i,
				      cfg->nets[i].ifname);
		if (i >= cfg->nr_nets && have)
			return refuse(in, -EPROTO, "fds for net%u, but the VM has %u NICs", i, cfg->nr_nets);
	}
	return 0;
}

static void close_net_fds(struct vm_inherit *inh)
{
	for (unsigned i = 0; i < CONFIG_MAX_NETS; i++) {
		for (unsigned q = 0; q < inh->nets[i].nr_fds; q++)
			if (inh->nets[i].fds[q] >= 0)
				close(inh->nets[i].fds[q]);
		inh->nets[i].nr_fds = 0;
	}
}

/* Live update: the memfd, then NETFDS frames until CONFIG. */
static int receive_config(struct mig_incoming *in, struct mig_frame *f)
{
	bool local = in->hello.features & MIG_FEAT_LOCAL;
	int ret;

	if (local) {
		ret = mig_recv(&in->lanes[0].s, f, MIG_TYPE_BIT(MIG_MEMFD));
		if (ret)
			return refuse(in, ret, "%s", in->lanes[0].s.err);
		if (f->len != 8 || mig_get_u64(f->data) != in->hello.mem_size) {
			mig_frame_close_fds(f);
			return refuse(in, -EPROTO, "MEMFD frame does not match the announced RAM size");
		}
		ret = memory_from_fd(in, f->fds[0]);
		if (ret)
			return ret;
	}
	for (;;) {
		ret = mig_recv(&in->lanes[0].s, f, MIG_TYPE_BIT(MIG_CONFIG) | (local ? MIG_TYPE_BIT(MIG_NETFDS) : 0));
		if (ret)
			return refuse(in, ret, "%s", in->lanes[0].s.err);
		if (f->type == MIG_CONFIG)
			return 0;
		ret = take_net_fds(in, f);
		if (ret)
			return ret;
	}
}

/* How pages will reach RAM (page_rx.h), and each connection's receiver. */
static int pages_setup(struct mig_incoming *in)
{
	struct page_ram *ram = &in->ram;

	*ram = (struct page_ram){ .base = in->mem.base, .size = in->mem.size, .fd = in->mem.fd,
				  .mode = page_rx_mode_for(in->mem.fd), .nr_lanes = in->nr_lanes };
	if (ram->mode == PAGE_RX_IN_PLACE &&
	    !(ram->reserved = calloc(in->mem.size / MIG_PAGE_SIZE / 64 + 1, sizeof(uint64_t))))
		return refuse(in, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < in->nr_lanes; i++) {
		if (page_rx_init(&in->lanes[i].rx, i, ram->mode))
			return refuse(in, -ENOMEM, "out of memory");
		in->lanes[i].rx.populate = &in->lanes[i].populate;
	}
	log_debug("migrate", "pages reach RAM %s", ram->mode == PAGE_RX_WRITE ? "by pwrite()" : "in place");
	return 0;
}

static int build_vm(struct mig_incoming *in)
{
	struct vm_create_opts opts = { .mem = &in->mem };
	struct vm_config cfg;
	struct mig_frame f;
	char err[512] = "";
	int ret;

	ret = receive_config(in, &f);
	if (ret)
		return ret;
	in->config = malloc(f.len + 1);
	if (!in->config)
		return refuse(in, -ENOMEM, "out of memory");
	memcpy(in->config, f.data, f.len);
	in->config[f.len] = '\0';
	in->config_len = f.len;
	config_init(&cfg);
	ret = config_from_json(&cfg, in->config, in->config_len, err, sizeof(err));
	if (ret) {
		config_free(&cfg);
		return refuse(in, ret, "config: %s", err);
	}
	if ((cfg.memory_mib << 20) != in->hello.mem_size) {
		config_free(&cfg);
		return refuse(in, -EPROTO, "config says %llu MiB of RAM, HELLO said %llu bytes",
			      (unsigned long long)cfg.memory_mib, (unsigned long long)in->hello.mem_size);
	}
	if (in->o->has_console) {
		cfg.console = (enum console_kind)in->o->console;
		free(cfg.console_path);
		cfg.console_path = in->o->console_path ? strdup(in->o->console_path) : NULL;
	}
	if (in->hello.features & MIG_FEAT_LOCAL) {
		ret = check_net_fds(in, &cfg);
		opts.inherit = &in->inherit;
	} else {
		ret = memory_fresh(in);
		if (!ret)
			ret = pages_setup(in);
		if (!ret && in->o->prefault)
			ret = memory_prefault(in);
	}
	if (ret) {
		config_free(&cfg);
		return ret;
	}
	ret = vm_create_with(&in->vm, &cfg, &opts, err, sizeof(err));
	config_free(&cfg);
	if (ret) {
		prefault_join(in);
		mem_destroy(&in->mem);
		return refuse(in, ret, "cannot build the VM here: %s", err);
	}
	/* Now, while the source still runs the guest, not in the downtime. */
	ret = snapshot_prepare(in->vm);
	if (ret)
		return refuse(in, ret, "cannot query KVM's vCPU state layout: %s", strerror_safe(-ret));
	ret = mig_send(&in->lanes[0].s, MIG_ACK, NULL, 0);
	return ret ? refuse(in, ret, "%s", in->lanes[0].s.err) : 0;
}

/* ------------------------------------------------------------ stream */

/* Populate helpers only pay where pages are received in place into fresh
 * RAM: not a live update's memfd, not RAM prefaulted already (they would
 * only take CPU from the receivers), not pages that arrive by pwrite(). */
static void start_populate_helpers(struct mig_incoming *in)
{
	bool fresh = !(in->hello.features & MIG_FEAT_LOCAL) && !in->o->prefault && in->ram.mode == PAGE_RX_IN_PLACE;
	unsigned n = fresh ? populate_helpers_for(in->nr_lanes) : 0;

	for (unsigned i = 0; i < n; i++)
		if (populate_start(&in->lanes[i].populate, NULL))
			break;
	log_debug("migrate", "%u receive thread(s), %u populate helper(s)", in->nr_lanes, n);
}

static void stop_populate_helpers(struct mig_incoming *in)
{
	for (unsigned i = 0; i < in->nr_lanes; i++)
		populate_stop(&in->lanes[i].populate);
	prefault_join(in);
}

static int start_lane_threads(struct mig_incoming *in)
{
	start_populate_helpers(in);
	for (unsigned i = 1; i < in->nr_lanes; i++) {
		int ret = -pthread_create(&in->lanes[i].thread, NULL, lane_thread, &in->lanes[i]);

		if (ret)
			return refuse(in, ret, "cannot start a receive thread");
		in->lanes[i].thread_started = true;
	}
	return 0;
}

static int join_lanes(struct mig_incoming *in)
{
	int ret = 0;

	for (unsigned i = 1; i < in->nr_lanes; i++) {
		struct in_lane *l = &in->lanes[i];

		if (!l->thread_started)
			continue;
		pthread_join(l->thread, NULL);
		l->thread_started = false;
		if (!ret && (l->ret || !l->ended))
			ret = refuse(in, l->ret ? l->ret : -EPROTO, "connection %u: %s", i,
				     l->s.err[0] ? l->s.err : "ended without LANE_END");
	}
	/* Every page is in: nothing may touch RAM behind the state's back. */
	stop_populate_helpers(in);
	return ret;
}

/* Main connection: pages and the state until DONE. */
static int receive_stream(struct mig_incoming *in)
{
	struct in_lane *l = &in->lanes[0];
	struct mig_frame f;
	int ret;

	for (;;) {
		ret = next_frame(in, l, page_frame_types(in) | MIG_TYPE_BIT(MIG_STATE) | MIG_TYPE_BIT(MIG_DONE), &f);
		if (!ret && f.type == MIG_SYNC)
			ret = answer_sync(l, &f);
		if (ret)
			return refuse(in, ret, "%s%s",
				      ret == -ECONNRESET || ret == -ETIMEDOUT || ret == -ECONNABORTED ? "incomplete stream: "
												       : "",
				      l->s.err);
		switch (f.type) {
		case MIG_PAGES:
		case MIG_SYNC:
			break;
		case MIG_STATE:
			if (in->state)
				return refuse(in, -EPROTO, "a second STATE frame");
			in->state = malloc(f.len ? f.len : 1);
			if (!in->state)
				return refuse(in, -ENOMEM, "out of memory for the state");
			memcpy(in->state, f.data, f.len);
			in->state_len = f.len;
			break;
		case MIG_DONE:
			if (!in->state)
				return refuse(in, -EPROTO, "DONE before the device state");
			if (f.len != 4 || (mig_get_u32(f.data) & ~MIG_DONE_PAUSED))
				return refuse(in, -EPROTO, "DONE frame: bad flags");
			in->leave_paused = mig_get_u32(f.data) & MIG_DONE_PAUSED;
			return 0;
		}
	}
}

/* Apply the state (the NICs stay quiesced, the vCPUs parked), ack "ready",
 * and run the guest only once the source has committed the hand-over. */
static int finish(struct mig_incoming *in)
{
	struct mig_frame f;
	char err[512] = "";
	int ret = join_lanes(in);

	if (ret)
		return ret;
	ret = snapshot_apply_tree(in->vm, in->state, in->state_len, in->config, in->config_len, err,
				  sizeof(err));
	if (ret)
		return refuse(in, ret, "%s", err);
	ret = vm_start_paused(in->vm);
	if (ret)
		return refuse(in, ret, "cannot start the vCPU threads: %s", strerror_safe(-ret));
	ret = mig_send(&in->lanes[0].s, MIG_ACK, NULL, 0);
	if (ret)
		return refuse(in, ret, "the source is gone before the hand-over: %s", in->lanes[0].s.err);
	ret = mig_recv(&in->lanes[0].s, &f, MIG_TYPE_BIT(MIG_COMMIT));
	if (ret)
		return refuse(in, ret, "the source did not commit the hand-over: %s", in->lanes[0].s.err);
	/* Committed: the VM is ours, whatever happens to the connection now. */
	if (!in->leave_paused) {
		ret = vm_resume(in->vm);
		if (ret)
			log_err("migrate", "cannot resume the migrated VM: %s", strerror_safe(-ret));
	}
	/* Paused at the source, paused here: vm.resume is the user's call. */
	if (mig_send(&in->lanes[0].s, MIG_ACK, NULL, 0))
		log_warn("migrate", "the source did not get the final ACK (%s); it keeps its copy paused",
			 in->lanes[0].s.err);
	return 0;
}

/* Closing with unread data would reset the connection and could destroy our
 * ERROR frame before the source reads it: stop writing, and swallow what the
 * source still sends until it hangs up (bounded). */
static void drain_until_source_closes(struct mig_incoming *in)
{
	char buf[65536];
	int fd = in->lanes[0].s.fd;
	uint64_t end = now_ns() + MIG_DRAIN_MS * 1000000ULL;

	for (unsigned i = 1; i < in->nr_lanes; i++)
		if (in->lanes[i].s.fd >= 0)
			shutdown(in->lanes[i].s.fd, SHUT_RDWR);
	shutdown(fd, SHUT_WR);
	while (now_ns() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 50) < 0 && errno != EINTR)
			break;
		if (p.revents && read(fd, buf, sizeof(buf)) <= 0)
			break;
	}
}

static void incoming_cleanup(struct mig_incoming *in, bool ok)
{
	for (unsigned i = 1; i < in->nr_lanes; i++)
		if (in->lanes[i].s.fd >= 0)
			shutdown(in->lanes[i].s.fd, SHUT_RDWR); /* wake lane threads */
	join_lanes(in);
	for (unsigned i = 0; i < in->nr_lanes; i++)
		mig_stream_close(&in->lanes[i].s);
	if (!ok) {
		vm_destroy(in->vm); /* never ran a guest instruction */
		in->vm = NULL;
	}
	mem_destroy(&in->mem);
	close_net_fds(&in->inherit);
	free(in->config);
	free(in->state);
	free(in->ram.reserved);
	for (unsigned i = 0; i < in->nr_lanes; i++)
		page_rx_destroy(&in->lanes[i].rx);
}

int mig_incoming(const char *url, const struct mig_incoming_opts *opts, struct vm **out,
		 struct mig_incoming_stats *stats, char *err, size_t errlen)
{
	static const struct mig_incoming_opts defaults;
	struct mig_incoming_opts o = opts ? *opts : defaults;
	struct mig_incoming *in;
	struct mig_url u;
	uint64_t t0;
	int lfd, ret;

	*out = NULL;
	if (!o.frame_timeout_ms)
		o.frame_timeout_ms = MIG_DEFAULT_FRAME_TIMEOUT_MS;
	ret = mig_url_parse(url, &u, err, errlen);
	if (ret)
		return ret;
	lfd = mig_listen(&u, err, errlen);
	if (lfd < 0)
		return lfd;
	in = calloc(1, sizeof(*in));
	if (!in) {
		close(lfd);
		return -ENOMEM;
	}
	in->o = &o;
	in->mem.fd = -1;
	for (unsigned i = 0; i < MIG_MAX_LANES; i++)
		in->lanes[i].s.fd = -1;
	ret = accept_lanes(in, lfd);
	t0 = now_ns();
	if (!ret)
		ret = build_vm(in);
	if (!ret)
		ret = start_lane_threads(in);
	if (!ret)
		ret = receive_stream(in);
	if (!ret)
		ret = finish(in);
	close(lfd);
	if (u.kind == MIG_TRANSPORT_UNIX)
		unlink(u.path);
	if (ret && in->lanes[0].s.fd >= 0) {
		mig_send_error(&in->lanes[0].s, "destination: %s", in->err);
		drain_until_source_closes(in);
	}
	if (stats) {
		memset(stats, 0, sizeof(*stats));
		stats->total_us = (now_ns() - t0) / 1000;
		for (unsigned i = 0; i < in->nr_lanes; i++) {
			stats->pages += in->lanes[i].rx.pages;
			stats->zero_pages += in->lanes[i].rx.zero_pages;
			stats->bytes_received += in->lanes[i].s.bytes_received;
		}
		stats->state_bytes = in->state_len;
		stats->local = in->hello.features & MIG_FEAT_LOCAL;
	}
	if (ret)
		snprintf(err, errlen, "incoming migration: %s", in->err[0] ? in->err : strerror_safe(-ret));
	incoming_cleanup(in, ret == 0);
	if (!ret)
		*out = in->vm;
	free(in);
	return ret;
}
