/* The source side of live migration and live update. See migrate.h. */
#include "migration/migrate.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/config_json.h"
#include "devices/virtio_net.h"
#include "migration/dirty.h"
#include "migration/migrate_lane.h"
#include "migration/snapshot.h"
#include "migration/state.h"
#include "migration/stream.h"
#include "migration/transport.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define MIG_DEFAULT_ACK_TIMEOUT_MS 30000
#define MIG_CONNECT_RETRIES 100
#define MIG_PEER_REASON_WAIT_MS 500
#define MIG_BW_MIN_SAMPLE (8u << 20)
#define MIG_BW_DEFAULT (500ULL << 20)  /* bytes/s assumed before a pass has measured it */
/* How often (in pages sent) a pass looks for a destination's ERROR or a
 * cancel. Counted in pages, not bitmap words: a poll() per 16 words of a
 * mostly clean 1 GiB bitmap was most of the final pass of an idle guest. */
#define MIG_PEER_CHECK_PAGES 1024
#define MIG_CONNECT_RETRY_US 20000
/* Fixed cost of the stop-and-copy phase besides pages (state tree, acks). */
#define MIG_STOP_OVERHEAD_US 2000
/* A sweep of pages new to the destination is timed on its own from this
 * many bytes on: below it the drain wait costs more than the figure says. */
#define MIG_FRESH_MIN_SAMPLE (1u << 20)

struct mig_source {
	struct vm *vm;
	struct mig_params p;
	struct mig_url url;
	pthread_t thread;
	atomic_bool cancel;
	atomic_bool done;

	pthread_mutex_t lock;        /* guards prog, committed, lanes_open */
	struct mig_progress prog;
	bool committed;              /* DONE sent: cancel is no longer possible */
	bool lanes_open;

	unsigned nr_lanes;
	struct mig_lane lanes[MIG_MAX_LANES];
	struct mig_dirty dirty;
	bool paused_by_us;
	bool handed_over;            /* COMMIT sent: the VM must never resume here by itself */
	bool was_paused;             /* migrating a paused VM: it stays paused at the destination */
	uint64_t pause_ns;
	uint64_t bytes_taken;        /* the most the destination was seen to have taken (never goes back) */
	/* Pages whose data the destination holds: sent non-zero and not zeroed
	 * since. Any other page is zero there and, for a destination that
	 * allocates RAM as it comes, not backed: writing it costs a page
	 * allocation, which on a host that reclaims free memory is 10-40 us a
	 * page against ~1 us for a page it holds. A guest touching new memory
	 * during migration dirties such pages, and the estimate prices them at
	 * their own measured rate (fresh_bps). */
	uint64_t *held;
	uint64_t sync_token;         /* the last SYNC sent */
	unsigned pages_since_check;  /* pages sent since the last check_peer */
	unsigned checks;
	char *config_json;
	uint64_t start_ns;
};

const char *mig_status_name(enum mig_status s)
{
	switch (s) {
	case MIG_STATUS_NONE:      return "none";
	case MIG_STATUS_ACTIVE:    return "active";
	case MIG_STATUS_COMPLETED: return "completed";
	case MIG_STATUS_FAILED:    return "failed";
	case MIG_STATUS_CANCELLED: return "cancelled";
	}
	return "unknown";
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static struct mig_stream *main_stream(struct mig_source *m)
{
	return &m->lanes[0].s;
}

static uint64_t lanes_bytes_sent(struct mig_source *m)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < m->nr_lanes; i++)
		n += m->lanes[i].s.bytes_sent;
	return n;
}

/* Bytes sent that the destination has not taken yet, still in our sockets'
 * send queues (SIOCOUTQ: on a UNIX socket until the peer reads them, on TCP
 * until the peer's kernel acks them). A pass's rate must count what the
 * destination took, not what the kernel queued: a destination slower than
 * us (writing into fresh memory) otherwise hides behind the socket buffers,
 * and the final pass runs far longer than estimated. */
static uint64_t lanes_backlog(struct mig_source *m)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < m->nr_lanes; i++) {
		int q = 0;

		if (ioctl(m->lanes[i].s.fd, SIOCOUTQ, &q) == 0 && q > 0)
			n += (uint64_t)q;
	}
	return n;
}

/* Bytes the destination has taken off the wire, of the @sent so far. A
 * UNIX socket's SIOCOUTQ counts buffer truesize, payload plus skb overhead,
 * so the figure can run ahead of what was sent (small frames) and must not
 * go back: kept monotonic, else a pass's difference wraps around to an
 * absurd bandwidth. Never more than @sent. */
static uint64_t lanes_bytes_taken(struct mig_source *m, uint64_t sent)
{
	uint64_t backlog = lanes_backlog(m);
	uint64_t taken = sent > backlog ? sent - backlog : 0;

	if (taken > m->bytes_taken)
		m->bytes_taken = taken;
	return m->bytes_taken;
}

static void progress_update(struct mig_source *m)
{
	uint64_t pages = 0, zero = 0;

	for (unsigned i = 0; i < m->nr_lanes; i++) {
		pages += m->lanes[i].pages;
		zero += m->lanes[i].zero_pages;
	}
	pthread_mutex_lock(&m->lock);
	m->prog.bytes_sent = lanes_bytes_sent(m);
	m->prog.pages_sent = pages;
	m->prog.zero_pages = zero;
	m->prog.total_us = (now_ns() - m->start_ns) / 1000;
	pthread_mutex_unlock(&m->lock);
}

/* First failure wins; the message is what the API/CLI user reads. */
static int fail(struct mig_source *m, int ret, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct mig_source *m, int ret, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&m->lock);
	if (!m->prog.message[0]) {
		va_start(ap, fmt);
		vsnprintf(m->prog.message, sizeof(m->prog.message), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&m->lock);
	return ret ? ret : -EIO;
}

/* A destination that gives up sends ERROR and closes: when our send fails
 * first, its reason may still be waiting on the main connection. */
static bool peer_reason(struct mig_source *m)
{
	struct mig_stream *s = &m->lanes[0].s;
	struct mig_frame f;
	int saved = s->recv_timeout_ms;

	if (s->fd < 0)
		return false;
	s->recv_timeout_ms = MIG_PEER_REASON_WAIT_MS;
	int ret = mig_recv(s, &f, 0);
	s->recv_timeout_ms = saved;
	return ret == -ECONNABORTED;
}

static int fail_stream(struct mig_source *m, struct mig_stream *s, int ret, const char *what)
{
	if (atomic_load(&m->cancel))
		return fail(m, -ECANCELED, "cancelled");
	if ((ret == -EPIPE || ret == -ECONNRESET) && peer_reason(m))
		return fail(m, ret, "%s", m->lanes[0].s.err);
	return fail(m, ret, "%s: %s", what, s->err[0] ? s->err : strerror_safe(-ret));
}

/* ------------------------------------------------------------ handshake */

static int connect_lanes(struct mig_source *m)
{
	struct mig_hello h = { .version = MIG_VERSION, .page_size = MIG_PAGE_SIZE, .lanes = m->nr_lanes,
			       .mem_size = m->vm->mem.size, .features = m->p.local ? MIG_FEAT_LOCAL : MIG_FEAT_SYNC };
	uint8_t hello[MIG_HELLO_SIZE];
	struct mig_frame f;
	char err[256] = "";
	int ret;

	if (getrandom(&h.session, sizeof(h.session), 0) != sizeof(h.session))
		h.session = (uint32_t)now_ns();
	for (unsigned i = 0; i < m->nr_lanes; i++) {
		int fd = mig_connect(&m->url, err, sizeof(err));

		/* A destination started just now may not listen yet: retry briefly. */
		for (unsigned t = 0; i == 0 && (fd == -ECONNREFUSED || fd == -ENOENT) && t < MIG_CONNECT_RETRIES &&
				     !atomic_load(&m->cancel); t++) {
			usleep(MIG_CONNECT_RETRY_US);
			fd = mig_connect(&m->url, err, sizeof(err));
		}

		if (fd < 0)
			return fail(m, fd, "%s", err);
		ret = lane_init(&m->lanes[i], fd);
		if (ret) /* lane_init closed fd */
			return fail(m, ret, "out of memory for the send buffers");
		m->lanes[i].s.recv_timeout_ms = m->p.ack_timeout_ms;
		pthread_mutex_lock(&m->lock);
		m->lanes_open = true;
		pthread_mutex_unlock(&m->lock);
		h.lane_index = i;
		mig_hello_encode(&h, hello);
		ret = mig_send(&m->lanes[i].s, MIG_HELLO, hello, sizeof(hello));
		if (ret)
			return fail_stream(m, &m->lanes[i].s, ret, "sending HELLO");
		if (i == 0) {
			/* The destination checks the HELLO before more connections come. */
			ret = mig_recv(main_stream(m), &f, MIG_TYPE_BIT(MIG_ACK));
			if (ret)
				return fail_stream(m, main_stream(m), ret, "destination refused");
		}
	}
	return 0;
}

static int send_config(struct mig_source *m)
{
	struct mig_frame f;
	int ret = mig_send(main_stream(m), MIG_CONFIG, m->config_json, strlen(m->config_json));

	if (ret)
		return fail_stream(m, main_stream(m), ret, "sending the config");
	/* ACK: the destination has built the VM (KVM VM, devices, vCPUs). */
	ret = mig_recv(main_stream(m), &f, MIG_TYPE_BIT(MIG_ACK));
	if (ret)
		return fail_stream(m, main_stream(m), ret, "destination could not build the VM");
	return 0;
}

/* A destination that gives up mid-stream says why on the main connection. */
static int check_peer(struct mig_source *m)
{
	struct pollfd p = { .fd = main_stream(m)->fd, .events = POLLIN };
	struct mig_frame f;
	int ret;

	if (atomic_load(&m->cancel))
		return fail(m, -ECANCELED, "cancelled");
	if (poll(&p, 1, 0) <= 0)
		return 0;
	ret = mig_recv(main_stream(m), &f, 0);
	return fail_stream(m, main_stream(m), ret ? ret : -EPROTO, "destination");
}

/* ------------------------------------------------------------ memory */

/* Send the pages @bits of bitmap word @w. A zero page the destination does
 * not hold is zero there already: nothing to send. */
static int send_word(struct mig_source *m, uint64_t w, uint64_t bits)
{
	const uint8_t *base = m->vm->mem.base;
	struct mig_lane *l = &m->lanes[w % m->nr_lanes];

	while (bits) {
		uint64_t bit = bits & -bits, p = w * 64 + (uint64_t)__builtin_ctzll(bits);
		int ret;

		bits &= bits - 1;
		ret = lane_copy_page(l, p * MIG_PAGE_SIZE, base + p * MIG_PAGE_SIZE, !(m->held[w] & bit));
		if (ret < 0)
			return fail_stream(m, &l->s, ret, "sending memory");
		if (ret)
			m->held[w] |= bit;
		else
			m->held[w] &= ~bit;   /* a zero entry punches a hole there */
	}
	return 0;
}

static int pass_checkpoint(struct mig_source *m, uint64_t bits)
{
	m->pages_since_check += (unsigned)__builtin_popcountll(bits);
	if (m->pages_since_check < MIG_PEER_CHECK_PAGES)
		return 0;
	m->pages_since_check = 0;
	if (++m->checks % 16 == 0)
		progress_update(m);
	return check_peer(m);
}

/* The dirty pages of words [@from, @to) (clearing them); with @only_fresh,
 * just those the destination does not hold (the rest stay dirty). */
static int send_words(struct mig_source *m, uint64_t from, uint64_t to, bool only_fresh)
{
	struct mig_dirty *d = &m->dirty;

	for (uint64_t w = from; w < to; w++) {
		uint64_t bits = d->bitmap[w] & (only_fresh ? ~m->held[w] : ~0ULL);
		int ret;

		if (!bits)
			continue;
		d->bitmap[w] &= ~bits;
		ret = send_word(m, w, bits);
		if (!ret)
			ret = pass_checkpoint(m, bits);
		if (ret)
			return ret;
	}
	return 0;
}

/* The first pass only needs what the RAM file holds: never-written pages are
 * holes (SEEK_DATA/SEEK_HOLE), which are zero at the destination too, and
 * reading them would only allocate memory here. Pages written after the scan
 * are in the dirty log (tracking started before it). */
static int send_first_pass(struct mig_source *m)
{
	struct mig_dirty *d = &m->dirty;
	int fd = m->vm->mem.fd;
	off_t size = (off_t)m->vm->mem.size, pos = 0;
	uint64_t done = 0;
	int ret;

	if (fd < 0)
		return send_words(m, 0, d->nr_words, false);
	while (pos < size) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;

		if (data < 0 || data >= size)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
		/* Whole bitmap words: a word is the unit a lane owns. */
		uint64_t w0 = (uint64_t)data / MIG_PAGE_SIZE / 64;
		uint64_t w1 = ((uint64_t)hole / MIG_PAGE_SIZE + 63) / 64;
		if (w0 < done)
			w0 = done;
		ret = send_words(m, w0, w1, false);
		if (ret)
			return ret;
		done = w1;
		pos = (off_t)(w1 * 64 * MIG_PAGE_SIZE);
	}
	memset(d->bitmap, 0, d->nr_words * sizeof(uint64_t));
	return 0;
}

static int flush_lanes(struct mig_source *m)
{
	for (unsigned i = 0; i < m->nr_lanes; i++) {
		int ret = lane_flush(&m->lanes[i]);

		if (ret)
			return fail_stream(m, &m->lanes[i].s, ret, "sending memory");
	}
	return 0;
}

/* Send every page set in the dirty bitmap (clearing it as we go). On the
 * first pass the destination's RAM is all zero and holds nothing, so zero
 * pages are skipped; later a page that became zero is sent as such where
 * the destination holds data. */
static int send_pass(struct mig_source *m, bool first)
{
	int ret = first ? send_first_pass(m) : send_words(m, 0, m->dirty.nr_words, false);

	if (!ret)
		ret = flush_lanes(m);
	if (ret)
		return ret;
	progress_update(m);
	return check_peer(m);
}

/* Dirty pages the destination does not hold. */
static uint64_t dirty_fresh_count(const struct mig_source *m)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < m->dirty.nr_words; w++)
		n += (uint64_t)__builtin_popcountll(m->dirty.bitmap[w] & ~m->held[w]);
	return n;
}

/* SYNC on every connection and wait for the answers: the destination has
 * then every page sent so far in RAM (stream.h). Our send queues cannot say
 * that on TCP, where the peer's kernel acks what its receiver has not read. */
static int sync_lanes(struct mig_source *m)
{
	uint8_t token[8];
	int ret = flush_lanes(m);

	if (ret)
		return ret;
	mig_put_u64(token, ++m->sync_token);
	for (unsigned i = 0; i < m->nr_lanes; i++) {
		ret = mig_send(&m->lanes[i].s, MIG_SYNC, token, sizeof(token));
		if (ret)
			return fail_stream(m, &m->lanes[i].s, ret, "sending SYNC");
	}
	for (unsigned i = 0; i < m->nr_lanes; i++) {
		struct mig_stream *s = &m->lanes[i].s;
		struct mig_frame f;

		ret = mig_recv(s, &f, MIG_TYPE_BIT(MIG_SYNC));
		if (!ret && (f.len != sizeof(token) || memcmp(f.data, token, sizeof(token)))) {
			snprintf(s->err, sizeof(s->err), "the destination answered SYNC with another token");
			ret = -EPROTO;
		}
		if (ret)
			return fail_stream(m, s, ret, "waiting for the destination's SYNC");
	}
	return 0;
}

/* Pass @pass > 0 starts with the dirty pages the destination does not hold,
 * timed on their own when there are enough of them to say something: from
 * the first byte until the destination has the last in RAM (after a SYNC
 * that lets the last pass's backlog drain first). That rate, page
 * allocation at the destination, prices such pages in the estimate. */
static int send_fresh_sweep(struct mig_source *m)
{
	uint64_t t0, sent0;
	int ret;

	if (dirty_fresh_count(m) * MIG_PAGE_SIZE < MIG_FRESH_MIN_SAMPLE)
		return 0;
	ret = sync_lanes(m);
	if (ret)
		return ret;
	t0 = now_ns();
	sent0 = lanes_bytes_sent(m);
	ret = send_words(m, 0, m->dirty.nr_words, true);
	if (!ret)
		ret = sync_lanes(m);
	if (ret)
		return ret;

	uint64_t bytes = lanes_bytes_sent(m) - sent0, dt = now_ns() - t0 + 1;

	pthread_mutex_lock(&m->lock);
	m->prog.fresh_bandwidth_bps = bytes * 1000000000ULL / dt;
	pthread_mutex_unlock(&m->lock);
	return check_peer(m);
}

/* What the stop-and-copy phase will take: pages the destination holds at
 * the best rate seen, pages it must allocate at their own rate (until one
 * is measured, the same), what is still queued, and the fixed part. */
static uint64_t expected_downtime_us(const struct mig_progress *p, uint64_t fresh_bytes)
{
	uint64_t bw = p->bandwidth_bps ? p->bandwidth_bps : MIG_BW_DEFAULT;
	uint64_t fresh_bw = p->fresh_bandwidth_bps && p->fresh_bandwidth_bps < bw ? p->fresh_bandwidth_bps : bw;

	return (p->remaining_bytes - fresh_bytes) * 1000000ULL / bw + fresh_bytes * 1000000ULL / fresh_bw +
	       MIG_STOP_OVERHEAD_US;
}

/* Pre-copy: pass after pass until what is left fits the downtime limit. */
static int precopy(struct mig_source *m)
{
	uint64_t limit_us = (uint64_t)m->p.downtime_ms * 1000;
	int ret;

	ret = dirty_start(&m->dirty, m->vm);
	if (ret)
		return fail(m, ret, "cannot start dirty-page tracking: %s", strerror_safe(-ret));
	m->held = calloc(m->dirty.nr_words, sizeof(uint64_t));
	if (!m->held)
		return fail(m, -ENOMEM, "out of memory for the migration's page bitmap");
	for (unsigned pass = 0;; pass++) {
		pthread_mutex_lock(&m->lock);
		m->prog.pass = pass;
		pthread_mutex_unlock(&m->lock);
		ret = pass ? send_fresh_sweep(m) : 0;
		if (ret)
			return ret;

		uint64_t t0 = now_ns(), b0 = lanes_bytes_taken(m, lanes_bytes_sent(m));

		ret = send_pass(m, pass == 0);
		if (ret)
			return ret;
		ret = dirty_sync(&m->dirty);
		if (ret)
			return fail(m, ret, "reading the dirty log failed: %s", strerror_safe(-ret));

		uint64_t dt = now_ns() - t0 + 1, sent = lanes_bytes_sent(m);
		uint64_t taken = lanes_bytes_taken(m, sent), bytes = taken - b0;
		uint64_t dirty = dirty_count(&m->dirty), fresh = dirty_fresh_count(m);
		/* Bandwidth from passes that sent enough to say something (keep the
		 * best); until then assume a conservative default. The first pass
		 * writes only pages new to the destination: it is their first rate. */
		uint64_t bw = bytes * 1000000000ULL / dt;
		pthread_mutex_lock(&m->lock);
		if (bytes >= MIG_BW_MIN_SAMPLE && bw > m->prog.bandwidth_bps)
			m->prog.bandwidth_bps = bw;
		if (pass == 0 && bytes >= MIG_FRESH_MIN_SAMPLE)
			m->prog.fresh_bandwidth_bps = bw;
		m->prog.dirty_rate_pps = dirty * 1000000000ULL / dt;
		/* What is still queued must drain in the downtime too. */
		m->prog.remaining_bytes = dirty * MIG_PAGE_SIZE + (sent - taken);
		m->prog.remaining_fresh_bytes = fresh * MIG_PAGE_SIZE;
		m->prog.expected_downtime_us = expected_downtime_us(&m->prog, fresh * MIG_PAGE_SIZE);
		uint64_t expected = m->prog.expected_downtime_us, fresh_bw = m->prog.fresh_bandwidth_bps;
		pthread_mutex_unlock(&m->lock);
		log_info("migrate", "pass %u: %llu bytes in %llu us, %llu pages dirty (%llu new to the destination, "
			 "%llu MiB/s into those), expected downtime %llu us",
			 pass, (unsigned long long)bytes, (unsigned long long)(dt / 1000), (unsigned long long)dirty,
			 (unsigned long long)fresh, (unsigned long long)(fresh_bw >> 20), (unsigned long long)expected);
		if (expected <= limit_us || pass + 1 >= m->p.max_passes)
			return 0;
	}
}

/* ------------------------------------------------------------ stop and copy */

static uint64_t us_since(uint64_t t0)
{
	return (now_ns() - t0) / 1000;
}

static int pause_vm(struct mig_source *m)
{
	uint64_t t0 = now_ns();
	int ret = m->was_paused ? 0 : vm_pause(m->vm);

	if (ret) {
		pthread_mutex_lock(&m->vm->lock);
		bool exiting = m->vm->exit_requested;
		pthread_mutex_unlock(&m->vm->lock);
		if (ret == -ESHUTDOWN || exiting)
			return fail(m, -ESHUTDOWN, "the VM shut down during migration (%s)", m->vm->exit_reason);
		return fail(m, ret, "cannot pause the VM: %s", strerror_safe(-ret));
	}
	m->paused_by_us = !m->was_paused;
	m->pause_ns = t0;
	pthread_mutex_lock(&m->lock);
	m->prog.paused = true;
	m->prog.stop_vcpus_us = us_since(t0);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int send_state(struct mig_source *m)
{
	struct state_tree *t = NULL;
	void *blob = NULL;
	size_t len = 0;
	char err[512] = "";
	uint64_t t0 = now_ns();
	int ret = snapshot_build_tree(m->vm, m->config_json, strlen(m->config_json), &t, err, sizeof(err));

	if (ret)
		return fail(m, ret, "saving the device state failed: %s", err);
	ret = state_tree_finish(t, &blob, &len);
	state_tree_free(t);
	if (ret)
		return fail(m, ret, "serializing the device state failed: %s", strerror_safe(-ret));
	pthread_mutex_lock(&m->lock);
	m->prog.state_bytes = len;
	pthread_mutex_unlock(&m->lock);
	ret = mig_send(main_stream(m), MIG_STATE, blob, len);
	free(blob);
	if (ret)
		return fail_stream(m, main_stream(m), ret, "sending the device state");
	pthread_mutex_lock(&m->lock);
	m->prog.state_save_us = us_since(t0);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* DONE, the destination's ready ACK, then COMMIT: the hand-over (stream.h
 * lists what each side does on each failure). Cancel is refused from DONE on. */
static int commit(struct mig_source *m)
{
	struct mig_frame f;
	int ret;

	for (unsigned i = 1; i < m->nr_lanes; i++) {
		ret = mig_send(&m->lanes[i].s, MIG_LANE_END, NULL, 0);
		if (ret)
			return fail_stream(m, &m->lanes[i].s, ret, "ending a connection");
	}
	pthread_mutex_lock(&m->lock);
	if (atomic_load(&m->cancel)) {
		pthread_mutex_unlock(&m->lock);
		return fail(m, -ECANCELED, "cancelled");
	}
	m->committed = true;
	pthread_mutex_unlock(&m->lock);
	uint64_t t0 = now_ns();
	uint8_t flags[4];

	mig_put_u32(flags, m->was_paused ? MIG_DONE_PAUSED : 0);
	ret = mig_send(main_stream(m), MIG_DONE, flags, sizeof(flags));
	if (ret)
		return fail_stream(m, main_stream(m), ret, "sending DONE");
	ret = mig_recv(main_stream(m), &f, MIG_TYPE_BIT(MIG_ACK));
	if (ret)
		return fail_stream(m, main_stream(m), ret, "waiting for the destination's ACK");
	pthread_mutex_lock(&m->lock);
	m->prog.dest_ack_us = us_since(t0);
	pthread_mutex_unlock(&m->lock);
	/* A failed send delivered no valid COMMIT (a partial frame fails its
	 * checksum): the destination will not run the guest, we may resume. */
	ret = mig_send(main_stream(m), MIG_COMMIT, NULL, 0);
	if (ret)
		return fail_stream(m, main_stream(m), ret, "sending COMMIT");
	/* From here on the destination may be running the guest: whatever
	 * happens, this VM never resumes by itself. */
	m->handed_over = true;
	ret = mig_recv(main_stream(m), &f, MIG_TYPE_BIT(MIG_ACK));
	if (ret)
		return fail(m, ret, "the destination did not confirm the committed hand-over (%s); it may be "
			    "running the guest, so the VM stays paused here: resume it (vm.resume) only if the "
			    "destination does not run it", main_stream(m)->err[0] ? main_stream(m)->err :
			    strerror_safe(-ret));
	return 0;
}

/* Paused, with device back ends quiesced, guest RAM holds still until the
 * migration ends (vm.resume is refused meanwhile): pages can go from RAM in
 * place, without a copy. */
static void lanes_stable(struct mig_source *m)
{
	for (unsigned i = 0; i < m->nr_lanes; i++)
		lane_set_stable(&m->lanes[i]);
}

static int migrate_precopy(struct mig_source *m)
{
	int ret;

	if (m->was_paused)
		lanes_stable(m);
	ret = precopy(m);
	if (!ret)
		ret = pause_vm(m);
	if (!ret)
		lanes_stable(m);
	if (!ret)
		ret = dirty_sync(&m->dirty) ? fail(m, -EIO, "reading the dirty log failed") : 0;
	if (!ret) {
		uint64_t t0 = now_ns();

		pthread_mutex_lock(&m->lock);
		m->prog.pass++;
		pthread_mutex_unlock(&m->lock);
		ret = send_pass(m, false);
		pthread_mutex_lock(&m->lock);
		m->prog.last_pass_us = us_since(t0);
		pthread_mutex_unlock(&m->lock);
	}
	if (!ret)
		ret = send_state(m);
	if (!ret)
		ret = commit(m);
	return ret;
}

_Static_assert(VIRTIO_NET_MAX_PAIRS <= MIG_MAX_FDS, "one NETFDS frame carries a NIC's queues");

/* Live update: every virtio-net's queue fds (TAP/macvtap), one NETFDS frame
 * per NIC. The peer gets new references to the same queues; ours stay open
 * and untouched, so a failed update leaves this VM exactly as it was. */
static int send_net_fds(struct mig_source *m)
{
	for (unsigned i = 0; i < m->vm->cfg.nr_nets; i++) {
		uint8_t p[MIG_NETFDS_SIZE] = { 0 };
		int fds[MIG_MAX_FDS], n, ret;
		unsigned offloads = 0;

		n = virtio_net_backend_fds(m->vm, i, fds, MIG_MAX_FDS, &offloads);
		if (n <= 0)
			return fail(m, n ? n : -ENODEV, "net%u: no back-end fds to hand over", i);
		mig_put_u32(p, i);
		mig_put_u32(p + 4, (uint32_t)n);
		mig_put_u32(p + 8, offloads);
		ret = mig_send_fds(main_stream(m), MIG_NETFDS, p, sizeof(p), fds, (unsigned)n);
		if (ret)
			return fail_stream(m, main_stream(m), ret, "handing over the TAP fds");
	}
	return 0;
}

/* Live update: the destination maps our memfd and takes our TAP queues;
 * nothing but state is copied. */
static int migrate_local(struct mig_source *m)
{
	uint8_t size[8];
	int ret;

	mig_put_u64(size, m->vm->mem.size);
	ret = mig_send_fd(main_stream(m), MIG_MEMFD, size, sizeof(size), m->vm->mem.fd);
	if (ret)
		return fail_stream(m, main_stream(m), ret, "handing over the memory fd");
	ret = send_net_fds(m);
	if (!ret)
		ret = send_config(m);
	if (!ret)
		ret = pause_vm(m);
	if (!ret)
		ret = send_state(m);
	if (!ret)
		ret = commit(m);
	return ret;
}

static void close_lanes(struct mig_source *m)
{
	pthread_mutex_lock(&m->lock);
	m->lanes_open = false;
	pthread_mutex_unlock(&m->lock);
	for (unsigned i = 0; i < m->nr_lanes; i++)
		if (m->lanes[i].slot[0].data || m->lanes[i].s.fd > 0)
			lane_destroy(&m->lanes[i]);
}

static void *mig_source_thread(void *arg)
{
	struct mig_source *m = arg;
	int ret;

	/* Failing here fails the state save later, with its own message. */
	snapshot_prepare(m->vm);
	ret = connect_lanes(m);
	if (!ret && !m->p.local)
		ret = send_config(m);
	if (!ret) {
		if (m->p.local) {
			ret = migrate_local(m);
		} else {
			ret = migrate_precopy(m);
		}
	}
	progress_update(m);
	pthread_mutex_lock(&m->lock);
	if (m->pause_ns)
		m->prog.downtime_us = (now_ns() - m->pause_ns) / 1000;
	m->prog.paused = false;
	pthread_mutex_unlock(&m->lock);
	dirty_stop(&m->dirty);
	free(m->held);
	m->held = NULL;
	if (ret == 0) {
		/* The destination owns the VM now: stop ours for good. */
		vm_request_exit(m->vm, 0, "migrated to %s", m->p.url);
	} else if (m->paused_by_us && !m->handed_over) {
		if (vm_resume(m->vm))
			fail(m, -EIO, "cannot resume the VM after a failed migration");
	}
	close_lanes(m);
	pthread_mutex_lock(&m->lock);
	if (ret == 0) {
		m->prog.status = MIG_STATUS_COMPLETED;
		snprintf(m->prog.message, sizeof(m->prog.message), "migrated to %s", m->p.url);
	} else {
		m->prog.status = ret == -ECANCELED ? MIG_STATUS_CANCELLED : MIG_STATUS_FAILED;
	}
	m->prog.total_us = (now_ns() - m->start_ns) / 1000;
	/* With the status: whoever has seen the final status sees done too. */
	atomic_store(&m->done, true);
	pthread_mutex_unlock(&m->lock);
	if (ret)
		log_err("migrate", "migration to %s %s, %s: %s", m->p.url,
			ret == -ECANCELED ? "cancelled" : "failed",
			m->handed_over ? "the VM stays paused here" : "the VM keeps running here", m->prog.message);
	else
		log_info("migrate", "migrated to %s in %llu us (downtime %llu us)", m->p.url,
			 (unsigned long long)m->prog.total_us, (unsigned long long)m->prog.downtime_us);
	return NULL;
}

/* ------------------------------------------------------------ public */

int mig_source_start(struct mig_source **out, struct vm *vm, const struct mig_params *p,
		     char *err, size_t errlen)
{
	struct mig_source *m;
	cJSON *cfg;
	int ret;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->vm = vm;
	m->p = *p;
	m->p.url[sizeof(m->p.url) - 1] = '\0';
	if (!m->p.downtime_ms)
		m->p.downtime_ms = MIG_DEFAULT_DOWNTIME_MS;
	if (!m->p.max_passes)
		m->p.max_passes = MIG_DEFAULT_MAX_PASSES;
	if (!m->p.ack_timeout_ms)
		m->p.ack_timeout_ms = MIG_DEFAULT_ACK_TIMEOUT_MS;
	m->nr_lanes = m->p.connections ? m->p.connections : 1;
	pthread_mutex_init(&m->lock, NULL);
	for (unsigned i = 0; i < MIG_MAX_LANES; i++)
		m->lanes[i].s.fd = -1;
	ret = mig_url_parse(m->p.url, &m->url, err, errlen);
	if (ret)
		goto fail;
	if (m->nr_lanes > MIG_MAX_LANES) {
		snprintf(err, errlen, "connections: %u is more than %u", m->nr_lanes, MIG_MAX_LANES);
		ret = -EINVAL;
		goto fail;
	}
	if (m->p.local && (m->url.kind != MIG_TRANSPORT_UNIX || m->nr_lanes != 1)) {
		snprintf(err, errlen, "local (live update) needs a unix: URL and one connection");
		ret = -EINVAL;
		goto fail;
	}
	if (m->p.local && vm->mem.fd < 0) {
		snprintf(err, errlen, "local: this VM's RAM is not a memfd (lazily restored?); migrate without local");
		ret = -EINVAL;
		goto fail;
	}
	m->was_paused = vm->state == VM_STATE_PAUSED;
	if (vm->state != VM_STATE_RUNNING && vm->state != VM_STATE_PAUSED) {
		snprintf(err, errlen, "the VM is %s; only a running or paused VM can be migrated",
			 vm_state_name(vm->state));
		ret = -EBUSY;
		goto fail;
	}
	cfg = config_to_json(&vm->cfg);
	m->config_json = cfg ? cJSON_PrintUnformatted(cfg) : NULL;
	cJSON_Delete(cfg);
	if (!m->config_json) {
		ret = -ENOMEM;
		goto fail;
	}
	m->prog.status = MIG_STATUS_ACTIVE;
	m->start_ns = now_ns();
	ret = -pthread_create(&m->thread, NULL, mig_source_thread, m);
	if (ret) {
		snprintf(err, errlen, "cannot start the migration thread: %s", strerror_safe(-ret));
		goto fail;
	}
	*out = m;
	return 0;
fail:
	free(m->config_json);
	pthread_mutex_destroy(&m->lock);
	free(m);
	return ret;
}

int mig_source_cancel(struct mig_source *m)
{
	int ret = 0;

	pthread_mutex_lock(&m->lock);
	if (m->committed && !atomic_load(&m->done)) {
		ret = -EBUSY;
	} else if (!atomic_load(&m->done)) {
		atomic_store(&m->cancel, true);
		/* Wake a send or receive blocked on a slow or silent peer. */
		if (m->lanes_open)
			for (unsigned i = 0; i < m->nr_lanes; i++)
				if (m->lanes[i].s.fd >= 0)
					shutdown(m->lanes[i].s.fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

void mig_source_progress(struct mig_source *m, struct mig_progress *out)
{
	pthread_mutex_lock(&m->lock);
	*out = m->prog;
	pthread_mutex_unlock(&m->lock);
}

bool mig_source_done(struct mig_source *m)
{
	return atomic_load(&m->done);
}

int mig_source_free(struct mig_source *m)
{
	int ret;

	if (!m)
		return 0;
	pthread_join(m->thread, NULL);
	ret = m->prog.status == MIG_STATUS_COMPLETED ? 0 : -EIO;
	free(m->config_json);
	pthread_mutex_destroy(&m->lock);
	free(m);
	return ret;
}
