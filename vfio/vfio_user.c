/* vfio-user client (see vfio_user.h; spec: QEMU docs/interop/vfio-user.rst). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vfio/vfio_uapi.h"
#include "vfio/vfio_user.h"
#include "vfio/vfio_user_proto.h"
#include "vmm/log.h"
#include "vmm/mem.h"

#define VU_DEFAULT_TIMEOUT_MS 5000
#define VU_MAX_DMA_WINDOWS    1024
#define VU_REGION_INFO_MAX    4096
#define VU_OUR_MAX_FDS        8

struct vu_region_cache {
	bool valid;
	struct vfio_region r;
};

struct vfio_user {
	struct vfio_backend be;
	int sock;
	int timeout_ms;
	struct guest_mem *mem;
	pthread_mutex_t lock;           /* one request in flight; guards everything below */
	bool dead;
	uint16_t next_id;
	uint32_t max_xfer, max_fds, server_minor;
	struct vfio_dev_info info;
	struct vu_region_cache regions[VFIO_MAX_REGIONS];
	struct vfio_dma *dma;           /* windows shared with the server */
	unsigned nr_dma;
	uint8_t *buf;                   /* one receive buffer, VFIO_USER_MAX_MSG bytes */
	uint64_t requests, dma_reads, dma_writes, dma_refused;
};

#define to_vu(b) ((struct vfio_user *)(b))

static const struct vfio_backend_ops vfio_user_ops;

bool vfio_user_is(const struct vfio_backend *be)
{
	return be && be->ops == &vfio_user_ops;
}

static int vu_mark_dead(struct vfio_user *vu, int err, const char *what)
{
	if (!vu->dead)
		log_err(vu->be.name, "device server %s (%s): device is gone", what,
			strerror_safe(-err));
	vu->dead = true;
	return -EPIPE;
}

/* ---- serving the server's DMA requests ---- */

static struct vfio_dma *vu_dma_find(struct vfio_user *vu, uint64_t addr, uint64_t len)
{
	for (unsigned i = 0; i < vu->nr_dma; i++) {
		struct vfio_dma *d = &vu->dma[i];

		if (addr >= d->iova && len <= d->size && addr - d->iova <= d->size - len)
			return d;
	}
	return NULL;
}

static int vu_serve_dma(struct vfio_user *vu, const struct vfio_user_hdr *h, size_t len)
{
	struct vfio_user_dma_rw rw;
	bool write = h->command == VFIO_USER_DMA_WRITE;
	struct vfio_dma *d;
	int err = 0;

	if (len < sizeof(rw))
		return vfio_user_reply(vu->sock, h, EINVAL, NULL, 0, NULL, 0);
	memcpy(&rw, vu->buf, sizeof(rw));
	if (!rw.count || rw.count > vu->max_xfer ||
	    (write && len != sizeof(rw) + rw.count) || (!write && len != sizeof(rw)))
		err = EINVAL;
	d = err ? NULL : vu_dma_find(vu, rw.address, rw.count);
	if (!err && (!d || !vu->mem || (write ? !d->write : !d->read)))
		err = EFAULT;
	if (!err) {
		uint64_t gpa = d->gpa + (rw.address - d->iova);

		if (write) {
			err = -mem_write(vu->mem, gpa, vu->buf + sizeof(rw), rw.count);
			vu->dma_writes++;
		} else {
			err = -mem_read(vu->mem, gpa, vu->buf + sizeof(rw), rw.count);
			vu->dma_reads++;
		}
	}
	if (err) {
		vu->dma_refused++;
		log_warn(vu->be.name, "refused %s [0x%llx,+0x%llx): %s",
			 vfio_user_command_name(h->command), (unsigned long long)rw.address,
			 (unsigned long long)rw.count, strerror_safe(err));
		return vfio_user_reply(vu->sock, h, err, NULL, 0, NULL, 0);
	}
	memcpy(vu->buf, &rw, sizeof(rw));
	return vfio_user_reply(vu->sock, h, 0, vu->buf, write ? sizeof(rw) : sizeof(rw) + rw.count,
			       NULL, 0);
}

/* A command from the server (only DMA_READ/WRITE are defined that way). */
static int vu_serve_command(struct vfio_user *vu, const struct vfio_user_hdr *h, size_t len)
{
	if (h->command == VFIO_USER_DMA_READ || h->command == VFIO_USER_DMA_WRITE)
		return vu_serve_dma(vu, h, len);
	log_warn(vu->be.name, "server sent unexpected command %u", h->command);
	if (h->flags & VFIO_USER_F_NO_REPLY)
		return 0;
	return vfio_user_reply(vu->sock, h, EOPNOTSUPP, NULL, 0, NULL, 0);
}

/* ---- request/reply ---- */

struct vu_reply {
	void *data;        /* payload copy destination */
	size_t cap;        /* its size */
	size_t len;        /* payload bytes received */
	int *fds;          /* received fds */
	unsigned nfds;     /* in: capacity, out: count */
};

/* Send @cmd and wait for its reply, serving server commands meanwhile.
 * Returns 0, -errno from the server's error reply, or -EPIPE if the server is
 * (now) dead. Lock held. */
static int vu_request(struct vfio_user *vu, uint16_t cmd, const void *payload, size_t len,
		      const int *fds, unsigned nfds, struct vu_reply *rep)
{
	struct vfio_user_hdr h = { .msg_id = vu->next_id++, .command = cmd,
				   .msg_size = (uint32_t)(sizeof(h) + len) };
	int ret;

	if (vu->dead)
		return -EPIPE;
	vu->requests++;
	ret = vfio_user_send(vu->sock, &h, payload, len, fds, nfds);
	if (ret)
		return vu_mark_dead(vu, ret, "stopped accepting requests");
	for (;;) {
		struct vfio_user_hdr r;
		int rfds[VU_OUR_MAX_FDS];
		unsigned rn = VU_OUR_MAX_FDS;
		size_t rlen;

		ret = vfio_user_recv(vu->sock, &r, vu->buf, VFIO_USER_MAX_MSG, &rlen, rfds, &rn,
				     vu->timeout_ms);
		if (ret == -ETIMEDOUT)
			return vu_mark_dead(vu, ret, "did not answer in time");
		if (ret == -ECONNRESET)
			return vu_mark_dead(vu, ret, "closed the connection");
		if (ret)
			return vu_mark_dead(vu, ret, "sent a malformed message");
		if ((r.flags & VFIO_USER_F_TYPE_MASK) == VFIO_USER_F_COMMAND) {
			for (unsigned i = 0; i < rn; i++)
				close(rfds[i]);
			ret = vu_serve_command(vu, &r, rlen);
			if (ret)
				return vu_mark_dead(vu, ret, "stopped accepting replies");
			continue;
		}
		if ((r.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_REPLY || r.msg_id != h.msg_id ||
		    r.command != cmd) {
			for (unsigned i = 0; i < rn; i++)
				close(rfds[i]);
			log_err(vu->be.name, "reply id %u cmd %u does not match request id %u cmd %s",
				r.msg_id, r.command, h.msg_id, vfio_user_command_name(cmd));
			return vu_mark_dead(vu, -EPROTO, "broke the protocol");
		}
		if (r.flags & VFIO_USER_F_ERROR) {
			for (unsigned i = 0; i < rn; i++)
				close(rfds[i]);
			ret = r.error_no && r.error_no < 4096 ? -(int)r.error_no : -EIO;
			return ret;
		}
		if (!rep) {
			for (unsigned i = 0; i < rn; i++)
				close(rfds[i]);
			return 0;
		}
		if (rlen > rep->cap) {
			for (unsigned i = 0; i < rn; i++)
				close(rfds[i]);
			log_err(vu->be.name, "%s reply of %zu bytes, at most %zu expected",
				vfio_user_command_name(cmd), rlen, rep->cap);
			return -EPROTO;
		}
		memcpy(rep->data, vu->buf, rlen);
		rep->len = rlen;
		unsigned keep = rn < rep->nfds ? rn : rep->nfds;
		for (unsigned i = 0; i < rn; i++) {
			if (i < keep)
				rep->fds[i] = rfds[i];
			else
				close(rfds[i]);
		}
		rep->nfds = keep;
		return 0;
	}
}

static int vu_request_locked(struct vfio_user *vu, uint16_t cmd, const void *payload, size_t len,
			     const int *fds, unsigned nfds, struct vu_reply *rep)
{
	pthread_mutex_lock(&vu->lock);
	int ret = vu_request(vu, cmd, payload, len, fds, nfds, rep);
	pthread_mutex_unlock(&vu->lock);
	return ret;
}

/* ---- VERSION ---- */

static int vu_parse_caps(struct vfio_user *vu, const char *json)
{
	cJSON *root = cJSON_Parse(json), *caps, *it;
	int ret = 0;

	if (!root)
		return -EPROTO;
	caps = cJSON_GetObjectItemCaseSensitive(root, "capabilities");
	if (caps && !cJSON_IsObject(caps)) {
		ret = -EPROTO;
		goto out;
	}
	it = cJSON_GetObjectItemCaseSensitive(caps, "max_msg_fds");
	if (it) {
		if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 1024) {
			ret = -EPROTO;
			goto out;
		}
		vu->max_fds = (uint32_t)it->valuedouble;
	}
	it = cJSON_GetObjectItemCaseSensitive(caps, "max_data_xfer_size");
	if (it) {
		if (!cJSON_IsNumber(it) || it->valuedouble < 512 || it->valuedouble > (1u << 30)) {
			ret = -EPROTO;
			goto out;
		}
		/* Never more than our own receive buffer allows. */
		double v = it->valuedouble;
		vu->max_xfer = v > VFIO_USER_DEFAULT_MAX_XFER ? VFIO_USER_DEFAULT_MAX_XFER : (uint32_t)v;
	}
out:
	cJSON_Delete(root);
	return ret;
}

static int vu_version(struct vfio_user *vu)
{
	char out[256];
	struct vfio_user_version v = { VFIO_USER_MAJOR, VFIO_USER_MINOR };
	uint8_t reply[4096];
	struct vu_reply rep = { .data = reply, .cap = sizeof(reply) - 1 };
	size_t jl;
	int ret;

	jl = (size_t)snprintf(out + sizeof(v), sizeof(out) - sizeof(v),
			      "{\"capabilities\":{\"max_msg_fds\":%u,\"max_data_xfer_size\":%u}}",
			      VU_OUR_MAX_FDS, VFIO_USER_DEFAULT_MAX_XFER) + 1;
	memcpy(out, &v, sizeof(v));
	ret = vu_request(vu, VFIO_USER_VERSION, out, sizeof(v) + jl, NULL, 0, &rep);
	if (ret)
		return ret;
	if (rep.len < sizeof(v)) {
		log_err(vu->be.name, "VERSION reply too short (%zu bytes)", rep.len);
		return -EPROTO;
	}
	memcpy(&v, reply, sizeof(v));
	if (v.major != VFIO_USER_MAJOR || v.minor > VFIO_USER_MINOR) {
		log_err(vu->be.name, "server speaks vfio-user %u.%u, we speak %u.%u", v.major,
			v.minor, VFIO_USER_MAJOR, VFIO_USER_MINOR);
		return -EPROTONOSUPPORT;
	}
	vu->server_minor = v.minor;
	if (rep.len > sizeof(v)) {
		reply[rep.len] = 0;
		/* The JSON must be NUL-terminated inside the message. */
		if (memchr(reply + sizeof(v), 0, rep.len - sizeof(v)) == NULL ||
		    vu_parse_caps(vu, (const char *)reply + sizeof(v))) {
			log_err(vu->be.name, "VERSION reply carries malformed capabilities");
			return -EPROTO;
		}
	}
	return 0;
}

static int vu_get_device_info(struct vfio_user *vu)
{
	struct vfio_device_info di = { .argsz = sizeof(di) };
	struct vu_reply rep = { .data = &di, .cap = sizeof(di) };
	int ret = vu_request(vu, VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &rep);

	if (ret)
		return ret;
	if (rep.len < 16) {
		log_err(vu->be.name, "DEVICE_GET_INFO reply too short");
		return -EPROTO;
	}
	if (!(di.flags & VFIO_DEVICE_FLAGS_PCI) || di.num_regions > VFIO_MAX_REGIONS ||
	    di.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX || di.num_irqs > VFIO_MAX_IRQS) {
		log_err(vu->be.name, "implausible device info: flags 0x%x, %u regions, %u irqs",
			di.flags, di.num_regions, di.num_irqs);
		return -EPROTO;
	}
	vu->info.flags = di.flags;
	vu->info.num_regions = di.num_regions;
	vu->info.num_irqs = di.num_irqs;
	return 0;
}

static int vu_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

static void vu_destroy(struct vfio_backend *be)
{
	struct vfio_user *vu = to_vu(be);

	for (unsigned i = 0; i < VFIO_MAX_REGIONS; i++)
		if (vu->regions[i].valid && vu->regions[i].r.mmap_fd >= 0)
			close(vu->regions[i].r.mmap_fd);
	if (vu->sock >= 0)
		close(vu->sock);
	pthread_mutex_destroy(&vu->lock);
	free(vu->dma);
	free(vu->buf);
	free(vu);
}

int vfio_user_open(const struct vfio_user_opts *o, struct vfio_backend **out)
{
	struct vfio_user *vu = calloc(1, sizeof(*vu));
	int ret;

	if (!vu) {
		if (o->fd >= 0)
			close(o->fd);
		return -ENOMEM;
	}
	vu->be.ops = &vfio_user_ops;
	snprintf(vu->be.name, sizeof(vu->be.name), "%s", o->name ? o->name : "vfio-user");
	vu->sock = -1;
	vu->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : VU_DEFAULT_TIMEOUT_MS;
	vu->mem = o->mem;
	vu->max_xfer = VFIO_USER_DEFAULT_MAX_XFER;
	vu->max_fds = VFIO_USER_DEFAULT_MAX_FDS;
	pthread_mutex_init(&vu->lock, NULL);
	vu->buf = malloc(VFIO_USER_MAX_MSG);
	if (!vu->buf) {
		ret = -ENOMEM;
		goto fail;
	}
	if (o->fd >= 0) {
		vu->sock = o->fd;
	} else if (o->socket_path) {
		ret = vu_connect(o->socket_path);
		if (ret < 0) {
			log_err(vu->be.name, "cannot connect to %s: %s", o->socket_path,
				strerror_safe(-ret));
			goto fail;
		}
		vu->sock = ret;
	} else {
		ret = -EINVAL;
		goto fail;
	}
	ret = vu_version(vu);
	if (!ret)
		ret = vu_get_device_info(vu);
	if (ret)
		goto fail;
	*out = &vu->be;
	return 0;
fail:
	vu_destroy(&vu->be);
	return ret;
}

int vfio_user_socket(struct vfio_backend *be)
{
	return to_vu(be)->sock;
}

bool vfio_user_alive(struct vfio_backend *be)
{
	struct vfio_user *vu = to_vu(be);

	pthread_mutex_lock(&vu->lock);
	bool alive = !vu->dead;
	pthread_mutex_unlock(&vu->lock);
	return alive;
}

void vfio_user_get_stats(struct vfio_backend *be, struct vfio_user_stats *st)
{
	struct vfio_user *vu = to_vu(be);

	pthread_mutex_lock(&vu->lock);
	*st = (struct vfio_user_stats){
		.max_xfer = vu->max_xfer, .max_fds = vu->max_fds, .server_minor = vu->server_minor,
		.requests = vu->requests, .dma_reads = vu->dma_reads, .dma_writes = vu->dma_writes,
		.dma_refused = vu->dma_refused,
	};
	pthread_mutex_unlock(&vu->lock);
}

int vfio_user_service(struct vfio_backend *be)
{
	struct vfio_user *vu = to_vu(be);
	int ret = 0;

	pthread_mutex_lock(&vu->lock);
	while (!vu->dead) {
		struct pollfd p = { .fd = vu->sock, .events = POLLIN };
		struct vfio_user_hdr h;
		int fds[VU_OUR_MAX_FDS];
		unsigned nfds = VU_OUR_MAX_FDS;
		size_t len;

		if (poll(&p, 1, 0) <= 0)
			break;
		ret = vfio_user_recv(vu->sock, &h, vu->buf, VFIO_USER_MAX_MSG, &len, fds, &nfds,
				     vu->timeout_ms);
		if (ret) {
			ret = vu_mark_dead(vu, ret, ret == -ECONNRESET ? "closed the connection"
								       : "sent a malformed message");
			break;
		}
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		if ((h.flags & VFIO_USER_F_TYPE_MASK) != VFIO_USER_F_COMMAND) {
			ret = vu_mark_dead(vu, -EPROTO, "sent a reply nobody asked for");
			break;
		}
		ret = vu_serve_command(vu, &h, len);
		if (ret) {
			ret = vu_mark_dead(vu, ret, "stopped accepting replies");
			break;
		}
	}
	if (vu->dead)
		ret = -EPIPE;
	pthread_mutex_unlock(&vu->lock);
	return ret;
}

/* ---- ops ---- */

static int vu_device_info(struct vfio_backend *be, struct vfio_dev_info *info)
{
	*info = to_vu(be)->info;
	return 0;
}

static int vu_fetch_region(struct vfio_user *vu, uint32_t index, struct vfio_region *out)
{
	uint8_t *buf = malloc(VU_REGION_INFO_MAX);
	uint32_t argsz = 256;
	int fd = -1, ret = -EPROTO;

	if (!buf)
		return -ENOMEM;
	for (int attempt = 0; attempt < 2; attempt++) {
		struct vfio_region_info ri = { .argsz = argsz, .index = index };
		struct vu_reply rep = { .data = buf, .cap = argsz, .fds = &fd, .nfds = 1 };

		if (fd >= 0)
			close(fd);
		fd = -1;
		ret = vu_request(vu, VFIO_USER_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0, &rep);
		if (ret)
			goto out;
		if (rep.len < sizeof(ri)) {
			ret = -EPROTO;
			goto out;
		}
		memcpy(&ri, buf, sizeof(ri));
		if (ri.index != index) {
			ret = -EPROTO;
			goto out;
		}
		if (ri.argsz <= argsz || attempt) {
			memset(out, 0, sizeof(*out));
			out->index = index;
			out->flags = ri.flags;
			out->size = ri.size;
			out->offset = ri.offset;
			out->mmap_fd = -1;
			ret = 0;
			if ((ri.flags & VFIO_REGION_INFO_FLAG_CAPS) && ri.cap_offset)
				ret = vfio_region_parse_caps(out, buf, (uint32_t)rep.len, ri.cap_offset);
			if (!ret && (ri.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
				if (fd < 0) {
					log_err(vu->be.name, "region %u is mmappable but came without fd",
						index);
					ret = -EPROTO;
				} else if (!out->nr_sparse && out->size) {
					out->nr_sparse = 1;
					out->sparse[0].size = out->size;
				}
			}
			if (!ret)
				ret = vfio_region_validate(out);
			if (!ret && (ri.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
				out->mmap_fd = fd;
				fd = -1;
			}
			goto out;
		}
		if (ri.argsz > VU_REGION_INFO_MAX) {
			ret = -EPROTO;
			goto out;
		}
		argsz = ri.argsz;
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	if (ret && ret != -EPIPE)
		log_err(vu->be.name, "region %u: bad region info from the server (%s)", index,
			strerror_safe(-ret));
	return ret;
}

static int vu_region_info(struct vfio_backend *be, uint32_t index, struct vfio_region *out)
{
	struct vfio_user *vu = to_vu(be);
	int ret = 0;

	if (index >= vu->info.num_regions)
		return -EINVAL;
	pthread_mutex_lock(&vu->lock);
	/* Cached: the fd stays owned here, and region accesses need the size. */
	if (!vu->regions[index].valid) {
		ret = vu_fetch_region(vu, index, &vu->regions[index].r);
		vu->regions[index].valid = !ret;
	}
	if (!ret)
		*out = vu->regions[index].r;
	pthread_mutex_unlock(&vu->lock);
	return ret;
}

static int vu_region_rw(struct vfio_user *vu, uint32_t index, uint64_t off, void *data,
			uint32_t len, bool write)
{
	struct vfio_region r;
	int ret = vu_region_info(&vu->be, index, &r);

	if (ret)
		return ret;
	if (off > r.size || len > r.size - off)
		return -ERANGE;
	pthread_mutex_lock(&vu->lock);
	while (len) {
		uint32_t chunk = len < vu->max_xfer ? len : vu->max_xfer;
		struct vfio_user_region_rw rw = { .offset = off, .region = index, .count = chunk };
		size_t want = sizeof(rw) + (write ? 0 : chunk);
		uint8_t *msg = malloc(sizeof(rw) + chunk);
		struct vu_reply rep = { .data = msg, .cap = want };

		if (!msg) {
			ret = -ENOMEM;
			break;
		}
		memcpy(msg, &rw, sizeof(rw));
		if (write)
			memcpy(msg + sizeof(rw), data, chunk);
		ret = vu_request(vu, write ? VFIO_USER_REGION_WRITE : VFIO_USER_REGION_READ, msg,
				 write ? sizeof(rw) + chunk : sizeof(rw), NULL, 0, &rep);
		if (!ret) {
			struct vfio_user_region_rw got = { 0 };

			if (rep.len >= sizeof(got))
				memcpy(&got, msg, sizeof(got));
			if (rep.len != want || got.offset != off || got.region != index ||
			    got.count != chunk) {
				log_err(vu->be.name, "%s reply does not match the request",
					write ? "REGION_WRITE" : "REGION_READ");
				ret = -EPROTO;
			} else if (!write) {
				memcpy(data, msg + sizeof(rw), chunk);
			}
		}
		free(msg);
		if (ret)
			break;
		off += chunk;
		data = (uint8_t *)data + chunk;
		len -= chunk;
	}
	pthread_mutex_unlock(&vu->lock);
	return ret;
}

static int vu_region_read(struct vfio_backend *be, uint32_t index, uint64_t off, void *buf,
			  uint32_t len)
{
	return vu_region_rw(to_vu(be), index, off, buf, len, false);
}

static int vu_region_write(struct vfio_backend *be, uint32_t index, uint64_t off,
			   const void *buf, uint32_t len)
{
	return vu_region_rw(to_vu(be), index, off, (void *)buf, len, true);
}

static int vu_region_mmap(struct vfio_backend *be, const struct vfio_region *r, uint64_t off,
			  uint64_t len, void **out)
{
	int prot = 0;
	void *p;

	if (r->mmap_fd < 0 || !(r->flags & VFIO_REGION_INFO_FLAG_MMAP) || !len || off > r->size ||
	    len > r->size - off)
		return -EINVAL;
	if (r->flags & VFIO_REGION_INFO_FLAG_READ)
		prot |= PROT_READ;
	if (r->flags & VFIO_REGION_INFO_FLAG_WRITE)
		prot |= PROT_WRITE;
	/* A file shorter than what it claims to back would SIGBUS whoever touches
	 * the mapping (the guest through a memslot): refuse it here. */
	struct stat st;
	if (fstat(r->mmap_fd, &st) || (S_ISREG(st.st_mode) &&
				       r->offset + off + len > (uint64_t)st.st_size)) {
		log_err(be->name, "region %u: mmap fd does not back [0x%llx,+0x%llx)", r->index,
			(unsigned long long)(r->offset + off), (unsigned long long)len);
		return -EPROTO;
	}
	p = mmap(NULL, len, prot, MAP_SHARED, r->mmap_fd, (off_t)(r->offset + off));
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

static int vu_irq_info(struct vfio_backend *be, uint32_t index, struct vfio_irq *out)
{
	struct vfio_user *vu = to_vu(be);
	struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = index };
	struct vu_reply rep = { .data = &ii, .cap = sizeof(ii) };
	int ret;

	if (index >= vu->info.num_irqs)
		return -EINVAL;
	ret = vu_request_locked(vu, VFIO_USER_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0, &rep);
	if (ret)
		return ret;
	if (rep.len != sizeof(ii) || ii.index != index || ii.count > VFIO_MAX_IRQ_COUNT) {
		log_err(be->name, "irq index %u: malformed IRQ info", index);
		return -EPROTO;
	}
	out->index = index;
	out->flags = ii.flags;
	out->count = ii.count;
	return 0;
}

static int vu_set_irqs(struct vfio_backend *be, uint32_t index, uint32_t start, uint32_t count,
		       uint32_t flags, const int *fds)
{
	struct vfio_user *vu = to_vu(be);
	bool efd = flags & VFIO_IRQ_SET_DATA_EVENTFD;
	uint32_t done = 0;
	int ret = 0;

	if (count > VFIO_MAX_IRQ_COUNT || (flags & VFIO_IRQ_SET_DATA_BOOL))
		return -EINVAL;
	if (efd) {
		/* Per spec no fds de-assigns; a mix of fds and holes cannot be sent. */
		unsigned holes = 0;
		for (uint32_t i = 0; i < count; i++)
			holes += fds[i] < 0;
		if (holes && holes != count)
			return -EINVAL;
		if (holes)
			efd = false;
	}
	pthread_mutex_lock(&vu->lock);
	do {
		uint32_t n = efd ? count - done : count;
		uint32_t maxn = vu->max_fds < VU_OUR_MAX_FDS ? vu->max_fds : VU_OUR_MAX_FDS;

		if (efd && n > maxn)
			n = maxn;
		struct vfio_irq_set s = { .argsz = sizeof(s), .flags = flags, .index = index,
					  .start = start + done, .count = n };
		ret = vu_request(vu, VFIO_USER_DEVICE_SET_IRQS, &s, sizeof(s), efd ? fds + done : NULL,
				 efd ? n : 0, NULL);
		done += n;
	} while (!ret && efd && done < count);
	pthread_mutex_unlock(&vu->lock);
	return ret;
}

static int vu_dma_map(struct vfio_backend *be, const struct vfio_dma *d)
{
	struct vfio_user *vu = to_vu(be);
	struct vfio_user_dma_map m = {
		.argsz = sizeof(m), .offset = d->fd_offset, .address = d->iova, .size = d->size,
	};
	int ret;

	if (!d->size || d->iova + d->size < d->iova)
		return -EINVAL;
	if (d->read)
		m.flags |= VFIO_USER_DMA_F_READ;
	if (d->write)
		m.flags |= VFIO_USER_DMA_F_WRITE;
	pthread_mutex_lock(&vu->lock);
	if (vu->nr_dma >= VU_MAX_DMA_WINDOWS) {
		ret = -ENOSPC;
		goto out;
	}
	struct vfio_dma *nd = realloc(vu->dma, (vu->nr_dma + 1) * sizeof(*nd));
	if (!nd) {
		ret = -ENOMEM;
		goto out;
	}
	vu->dma = nd;
	ret = vu_request(vu, VFIO_USER_DMA_MAP, &m, sizeof(m), d->fd >= 0 ? &d->fd : NULL,
			 d->fd >= 0 ? 1 : 0, NULL);
	if (!ret)
		vu->dma[vu->nr_dma++] = *d;
out:
	pthread_mutex_unlock(&vu->lock);
	return ret;
}

static int vu_dma_unmap(struct vfio_backend *be, uint64_t iova, uint64_t size)
{
	struct vfio_user *vu = to_vu(be);
	struct vfio_user_dma_unmap u = { .argsz = sizeof(u), .address = iova, .size = size };
	struct vfio_user_dma_unmap got;
	struct vu_reply rep = { .data = &got, .cap = sizeof(got) };
	int ret;

	pthread_mutex_lock(&vu->lock);
	/* Forget the window first: from now on DMA_READ/WRITE to it is refused. */
	for (unsigned i = 0; i < vu->nr_dma; i++) {
		if (vu->dma[i].iova == iova && vu->dma[i].size == size) {
			vu->dma[i] = vu->dma[--vu->nr_dma];
			break;
		}
	}
	ret = vu_request(vu, VFIO_USER_DMA_UNMAP, &u, sizeof(u), NULL, 0, &rep);
	if (!ret && (rep.len < 24 || got.address != iova || got.size != size)) {
		log_err(be->name, "DMA_UNMAP reply does not match the request");
		ret = -EPROTO;
	}
	pthread_mutex_unlock(&vu->lock);
	return ret;
}

static int vu_reset(struct vfio_backend *be)
{
	return vu_request_locked(to_vu(be), VFIO_USER_DEVICE_RESET, NULL, 0, NULL, 0, NULL);
}

static int vu_device_feature(struct vfio_backend *be, uint32_t flags, void *data, uint32_t len)
{
	struct vfio_user *vu = to_vu(be);
	size_t total = sizeof(struct vfio_device_feature) + len;
	uint8_t *msg;
	int ret;

	if (len > 65536)
		return -EINVAL;
	msg = calloc(1, total);
	if (!msg)
		return -ENOMEM;
	struct vfio_device_feature f = { .argsz = (uint32_t)total, .flags = flags };
	memcpy(msg, &f, sizeof(f));
	if (len)
		memcpy(msg + sizeof(f), data, len);
	struct vu_reply rep = { .data = msg, .cap = total };
	ret = vu_request_locked(vu, VFIO_USER_DEVICE_FEATURE, msg, total, NULL, 0, &rep);
	if (!ret && (flags & VFIO_DEVICE_FEATURE_GET)) {
		if (rep.len != total)
			ret = -EPROTO;
		else
			memcpy(data, msg + sizeof(f), len);
	}
	free(msg);
	return ret;
}

static const struct vfio_backend_ops vfio_user_ops = {
	.kind = "vfio-user",
	.device_info = vu_device_info,
	.region_info = vu_region_info,
	.region_read = vu_region_read,
	.region_write = vu_region_write,
	.region_mmap = vu_region_mmap,
	.irq_info = vu_irq_info,
	.set_irqs = vu_set_irqs,
	.dma_map = vu_dma_map,
	.dma_unmap = vu_dma_unmap,
	.reset = vu_reset,
	.device_feature = vu_device_feature,
	.destroy = vu_destroy,
};
