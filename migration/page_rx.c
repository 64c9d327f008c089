/* Receiving PAGES frames into guest RAM. See page_rx.h. */
#include "migration/page_rx.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "vmm/log.h"

enum page_rx_mode page_rx_mode_for(int fd)
{
	struct statfs st;

	if (fd < 0)
		return PAGE_RX_IN_PLACE;
	if (fstatfs(fd, &st) == 0 && st.f_type == HUGETLBFS_MAGIC)
		return PAGE_RX_IN_PLACE;
	return PAGE_RX_WRITE;
}

int page_rx_init(struct page_rx *rx, unsigned index, enum page_rx_mode mode)
{
	memset(rx, 0, sizeof(*rx));
	rx->index = index;
	if (mode == PAGE_RX_WRITE) {
		rx->buf = malloc((size_t)MIG_PAGES_PER_FRAME * MIG_PAGE_SIZE);
		if (!rx->buf)
			return -ENOMEM;
	}
	return 0;
}

void page_rx_destroy(struct page_rx *rx)
{
	free(rx->buf);
	rx->buf = NULL;
}

static int rx_fail(struct mig_stream *s, int ret, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rx_fail(struct mig_stream *s, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	return ret;
}

/* The connection that carries page @p: its bitmap word's turn (stream.h),
 * so a newer copy of a page never overtakes an older one. */
static unsigned page_lane(const struct page_ram *ram, uint64_t p)
{
	return (unsigned)(p / 64 % ram->nr_lanes);
}

/* Check the entries of a PAGES frame against RAM, the connection it came on
 * and the frame length, and lay out where the data goes: runs of
 * consecutive pages, one iovec each, at their place in guest RAM. Returns
 * the number of runs or -errno; *@data_pages the pages with data. */
static int plan_pages(struct page_rx *rx, struct mig_stream *s, const struct page_ram *ram, uint32_t count,
		      uint32_t len, uint64_t *data_pages)
{
	unsigned n = 0;
	uint64_t data = 0;

	for (uint32_t i = 0; i < count; i++) {
		uint64_t e = rx->entries[i], off = e & ~(uint64_t)(MIG_PAGE_SIZE - 1);

		if ((e & (MIG_PAGE_SIZE - 1) & ~MIG_PAGE_ZERO) || off >= ram->size)
			return rx_fail(s, -EPROTO, "PAGES frame: entry %u (0x%llx) is outside RAM or has unknown flags",
				       i, (unsigned long long)e);
		if (page_lane(ram, off / MIG_PAGE_SIZE) != rx->index)
			return rx_fail(s, -EPROTO, "PAGES frame: page 0x%llx came on connection %u; it belongs "
				       "on connection %u", (unsigned long long)off, rx->index,
				       page_lane(ram, off / MIG_PAGE_SIZE));
		if (e & MIG_PAGE_ZERO)
			continue;
		data++;
		if (n && (uint8_t *)rx->iov[n - 1].iov_base + rx->iov[n - 1].iov_len == ram->base + off)
			rx->iov[n - 1].iov_len += MIG_PAGE_SIZE;
		else
			rx->iov[n++] = (struct iovec){ ram->base + off, MIG_PAGE_SIZE };
	}
	if (8 + 8ULL * count + data * MIG_PAGE_SIZE != len)
		return rx_fail(s, -EPROTO, "PAGES frame of %u bytes for %u entries with %llu pages of data", len,
			       count, (unsigned long long)data);
	*data_pages = data;
	return (int)n;
}

static uint64_t run_offset(const struct page_ram *ram, const struct iovec *run)
{
	return (uint64_t)((uint8_t *)run->iov_base - ram->base);
}

static bool pages_reserved(const uint64_t *map, uint64_t p, uint64_t n)
{
	for (; n; p++, n--)
		if (!(map[p / 64] & (1ULL << (p % 64))))
			return false;
	return true;
}

static void pages_mark_reserved(uint64_t *map, uint64_t p, uint64_t n)
{
	for (; n; p++, n--)
		map[p / 64] |= 1ULL << (p % 64);
}

/* In place: back the data runs with memory first, so a full tmpfs/hugetlbfs
 * fails here with ENOSPC instead of killing us with SIGBUS when the data
 * lands in the mapping, and pages come allocated in bulk. Runs known to be
 * backed already are skipped; the others are listed in rx->fresh. Returns
 * how many, or -errno. */
static int reserve_runs(struct page_rx *rx, struct mig_stream *s, const struct page_ram *ram, unsigned n)
{
	unsigned nr_fresh = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t off = run_offset(ram, &rx->iov[i]);
		uint64_t p = off / MIG_PAGE_SIZE, np = rx->iov[i].iov_len / MIG_PAGE_SIZE;

		if (ram->reserved && pages_reserved(ram->reserved, p, np))
			continue;
		rx->fresh[nr_fresh++] = rx->iov[i];
		if (ram->fd >= 0 && fallocate(ram->fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)rx->iov[i].iov_len) < 0) {
			if (errno != EOPNOTSUPP)
				return rx_fail(s, -errno, "storing guest RAM failed: %s", strerror_safe(errno));
			continue;
		}
		if (ram->reserved)
			pages_mark_reserved(ram->reserved, p, np);
	}
	return (int)nr_fresh;
}

/* Write mode: the checked data, run by run, into the RAM file. */
static int write_runs(struct page_rx *rx, struct mig_stream *s, const struct page_ram *ram, unsigned n)
{
	const uint8_t *data = rx->buf;

	for (unsigned i = 0; i < n; i++) {
		uint64_t off = run_offset(ram, &rx->iov[i]);
		size_t left = rx->iov[i].iov_len;

		while (left) {
			ssize_t w = pwrite(ram->fd, data, left, (off_t)off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return rx_fail(s, w ? -errno : -ENOSPC, "storing guest RAM failed: %s",
					       strerror_safe(w ? errno : ENOSPC));
			data += w;
			off += (uint64_t)w;
			left -= (size_t)w;
		}
	}
	return 0;
}

/* Zero pages: punching a hole zeroes without allocating (a full RAM file
 * stays fine). Only after the frame's checksum held. */
static void zero_pages(struct page_rx *rx, const struct page_ram *ram, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		uint64_t off = rx->entries[i] & ~(uint64_t)(MIG_PAGE_SIZE - 1), p = off / MIG_PAGE_SIZE;

		if (!(rx->entries[i] & MIG_PAGE_ZERO))
			continue;
		if (ram->fd < 0 || fallocate(ram->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
					     MIG_PAGE_SIZE) < 0)
			memset(ram->base + off, 0, MIG_PAGE_SIZE);
		else if (ram->reserved)
			ram->reserved[p / 64] &= ~(1ULL << (p % 64));
		rx->zero_pages++;
	}
}

/* In place: the data straight into guest RAM. Data of a frame whose
 * checksum fails is in RAM already, unchecked: harmless, since the
 * migration fails and that VM never runs. */
static int receive_in_place(struct page_rx *rx, struct mig_stream *s, struct mig_rx *f, const struct page_ram *ram,
			    unsigned n)
{
	int ret = reserve_runs(rx, s, ram, n);

	if (ret > 0 && rx->populate)
		populate_post(rx->populate, rx->fresh, (unsigned)ret);
	if (ret >= 0)
		ret = n ? mig_recv_part(s, f, rx->iov, n) : 0;
	return ret < 0 ? ret : mig_recv_end(s, f);
}

/* Write mode: the data into rx->buf, checked, then written. */
static int receive_and_write(struct page_rx *rx, struct mig_stream *s, struct mig_rx *f, const struct page_ram *ram,
			     unsigned n, uint64_t data_pages)
{
	int ret = data_pages ? mig_recv_part(s, f, &(struct iovec){ rx->buf, data_pages * MIG_PAGE_SIZE }, 1) : 0;

	if (!ret)
		ret = mig_recv_end(s, f);
	return ret ? ret : write_runs(rx, s, ram, n);
}

int page_rx_frame(struct page_rx *rx, struct mig_stream *s, struct mig_rx *f, const struct page_ram *ram)
{
	uint64_t data_pages = 0;
	uint8_t head[8];
	uint32_t count;
	int n, ret;

	if (ram->mode == PAGE_RX_WRITE && !rx->buf)
		return rx_fail(s, -EINVAL, "PAGES frame: no receive buffer");
	ret = f->len < 8 ? rx_fail(s, -EPROTO, "PAGES frame of %u bytes", f->len)
			 : mig_recv_part(s, f, &(struct iovec){ head, 8 }, 1);
	if (ret)
		return ret;
	count = mig_get_u32(head);
	if (count == 0 || count > MIG_PAGES_PER_FRAME || mig_get_u32(head + 4) || f->len - 8 < 8 * count)
		return rx_fail(s, -EPROTO, "PAGES frame: bad count %u or reserved field", count);
	ret = mig_recv_part(s, f, &(struct iovec){ rx->entries, 8 * (size_t)count }, 1);
	if (ret)
		return ret;
	/* Little-endian on the wire; decoded in place (the CRC saw the wire bytes). */
	for (uint32_t i = 0; i < count; i++)
		rx->entries[i] = mig_get_u64((const uint8_t *)&rx->entries[i]);
	n = plan_pages(rx, s, ram, count, f->len, &data_pages);
	if (n < 0)
		return n;
	ret = ram->mode == PAGE_RX_WRITE ? receive_and_write(rx, s, f, ram, (unsigned)n, data_pages)
					 : receive_in_place(rx, s, f, ram, (unsigned)n);
	if (ret)
		return ret;
	zero_pages(rx, ram, count);
	rx->pages += data_pages;
	return 0;
}
