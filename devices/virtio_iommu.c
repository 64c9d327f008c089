/* The virtio-iommu device model: queues, config space, translation hook for
 * the devices behind it, fault reporting. See virtio_iommu.h. */
#include "devices/virtio_iommu.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/virtio_iommu_state.h"
#include "migration/state.h"
#include "vmm/log.h"

#define REQUESTQ 0
#define EVENTQ   1
/* Largest device-readable part we read (PROBE is 72 bytes) and largest
 * device-writable part we accept (PROBE: probe_size + tail). */
#define VIOMMU_IN_MAX  128
#define VIOMMU_OUT_MAX (VIOMMU_PROBE_PROPS_SIZE + VIOMMU_TAIL_SIZE)

#define VIOMMU_FEATURES ((1ULL << VIRTIO_IOMMU_F_INPUT_RANGE) | (1ULL << VIRTIO_IOMMU_F_DOMAIN_RANGE) | \
			 (1ULL << VIRTIO_IOMMU_F_MAP_UNMAP) | (1ULL << VIRTIO_IOMMU_F_PROBE) | \
			 (1ULL << VIRTIO_IOMMU_F_BYPASS_CONFIG))

static struct virtio_iommu *to_viommu(struct virtio_device *vdev)
{
	return vdev->opaque;
}

static void viommu_remap_clients(struct virtio_iommu *v);

/* ---- config space (§5.13.4) ---- */

static void viommu_get_config(struct virtio_device *vdev, uint32_t off, void *data, uint32_t len)
{
	uint8_t cfg[VIOMMU_CONFIG_SIZE];

	viommu_config_fill(&to_viommu(vdev)->io, VIOMMU_PROBE_PROPS_SIZE, cfg);
	memset(data, 0, len);
	if (off < sizeof(cfg))
		memcpy(data, cfg + off, len < sizeof(cfg) - off ? len : sizeof(cfg) - off);
}

static void viommu_set_config(struct virtio_device *vdev, uint32_t off, const void *data, uint32_t len)
{
	struct virtio_iommu *v = to_viommu(vdev);

	/* §5.13.4.1: only bypass is writable, only with BYPASS_CONFIG; the
	 * driver must write 0 or 1 and we ignore bits 1-7. */
	if (off != 36 || len != 1 || !virtio_has_feature(vdev, VIRTIO_IOMMU_F_BYPASS_CONFIG)) {
		log_warn(vdev->name, "ignoring config write at %u (len %u)", off, len);
		return;
	}
	iommu_set_bypass(&v->io, *(const uint8_t *)data & 1);
	viommu_remap_clients(v);        /* bypass on/off changes every unattached endpoint */
}

/* External endpoints (VFIO) mirror their domain into their own DMA context. */
static void viommu_sync_external(struct virtio_iommu *v)
{
	for (unsigned i = 0; i < v->nr_clients; i++)
		if (v->clients[i].sync)
			v->clients[i].sync(v->clients[i].sync_opaque);
}

/* Device reset (§5.13.5): endpoints detached, domains gone; config.bypass
 * keeps its value (§5.13.4.2). */
static void viommu_reset(struct virtio_device *vdev)
{
	struct virtio_iommu *v = to_viommu(vdev);

	iommu_reset(&v->io);
	viommu_sync_external(v);
	pthread_mutex_lock(&v->fault_lock);
	v->pending_count = 0;
	pthread_mutex_unlock(&v->fault_lock);
	/* Every endpoint is detached now: ring pointers cached by the devices
	 * behind us must be re-translated (and fail unless bypass is on). */
	viommu_remap_clients(v);
}

static int viommu_features_ok(struct virtio_device *vdev)
{
	/* §5.13.5: a driver that cannot MAP/UNMAP must not negotiate it; we
	 * have no other mode, so accept whatever subset it took. */
	return 0;
}

static const struct virtio_device_ops viommu_ops = {
	.get_config = viommu_get_config,
	.set_config = viommu_set_config,
	.features_ok = viommu_features_ok,
	.reset = viommu_reset,
};

/* ---- translation hook for the devices behind us ---- */

_Static_assert(VIRTIO_DMA_READ == IOMMU_MAP_F_READ && VIRTIO_DMA_WRITE == IOMMU_MAP_F_WRITE,
	       "the virtio core's access bits are the MAP flags");

/* The virtio core's DMA hook: what the device's own DMA cache does not hold
 * (every ring and buffer address of a device behind us, the first time and
 * after every change of the translation) comes through here. */
static int viommu_dma_translate(void *opaque, uint64_t iova, uint64_t len, bool write,
				struct virtio_dma_range *r)
{
	struct viommu_client *c = opaque;
	uint32_t perm = write ? IOMMU_PERM_WRITE : IOMMU_PERM_READ;
	struct iommu_fault f;
	struct iommu_xlate x;
	int ret = iommu_translate_ep_range(&c->viommu->io, c->ep, iova, len, perm, &x, &f);

	if (ret == -EFAULT)
		virtio_iommu_report_fault(c->viommu, &f);
	if (ret)
		return ret;
	*r = (struct virtio_dma_range){ .start = x.start, .last = x.last, .gpa = x.phys,
					.gen = x.gen, .perm = x.flags };
	return 0;
}

int virtio_iommu_add_endpoint(struct virtio_iommu *v, struct virtio_device *client, uint16_t bdf)
{
	struct viommu_client *c;
	int r;

	if (v->nr_clients == VIOMMU_MAX_CLIENTS)
		return -ENOSPC;
	c = &v->clients[v->nr_clients];
	r = iommu_endpoint_add(&v->io, bdf, &c->ep);
	if (r)
		return r;
	c->viommu = v;
	c->vdev = client;
	c->bdf = bdf;
	r = virtio_device_set_dma_translate(client, viommu_dma_translate, c, &v->io.gen);
	if (r)
		return r;
	v->nr_clients++;
	return 0;
}

int virtio_iommu_add_external(struct virtio_iommu *v, uint16_t bdf, void (*sync)(void *opaque),
			      void *opaque)
{
	struct viommu_client *c;
	int r;

	if (v->nr_clients == VIOMMU_MAX_CLIENTS)
		return -ENOSPC;
	c = &v->clients[v->nr_clients];
	r = iommu_endpoint_add(&v->io, bdf, &c->ep);
	if (r)
		return r;
	c->viommu = v;
	c->vdev = NULL;
	c->bdf = bdf;
	c->sync = sync;
	c->sync_opaque = opaque;
	v->nr_clients++;
	return 0;
}

/* ---- fault reporting (§5.13.6.9) ---- */

void virtio_iommu_report_fault(struct virtio_iommu *v, const struct iommu_fault *f)
{
	uint64_t one = 1;
	ssize_t n;

	pthread_mutex_lock(&v->fault_lock);
	if (v->pending_count < VIOMMU_PENDING_FAULTS) {
		v->pending[(v->pending_head + v->pending_count) % VIOMMU_PENDING_FAULTS] = *f;
		v->pending_count++;
	} else {
		/* "If no buffer is available, the device can either wait for
		 * one to be consumed, or drop the event": we keep 64, then drop. */
		v->faults_dropped++;
	}
	pthread_mutex_unlock(&v->fault_lock);
	n = write(v->fault_fd, &one, sizeof(one));
	(void)n;   /* the counter saturating only means a wake-up is pending */
}

void virtio_iommu_flush_faults(struct virtio_iommu *v)
{
	struct virtqueue *vq = &v->vdev.vqs[EVENTQ];
	struct virtq_elem *elem;
	uint8_t ev[VIOMMU_FAULT_SIZE];
	uint64_t drain;
	bool sent = false;
	ssize_t n;

	n = read(v->fault_fd, &drain, sizeof(drain));
	(void)n;
	elem = malloc(sizeof(*elem));
	if (!elem)
		return;
	pthread_mutex_lock(&v->vdev.lock);
	for (;;) {
		struct iommu_fault f;
		int r;

		pthread_mutex_lock(&v->fault_lock);
		if (!v->pending_count) {
			pthread_mutex_unlock(&v->fault_lock);
			break;
		}
		f = v->pending[v->pending_head];
		pthread_mutex_unlock(&v->fault_lock);
		r = virtq_pop(vq, elem);
		if (r <= 0)
			break;              /* no buffer: keep it for the next one */
		if (r == VIRTQ_FAULT) {
			/* Only if this device were translated itself: buffer unusable. */
			virtq_push(vq, elem, 0);
			sent = true;
			continue;
		}
		if (elem->out_num || elem->in_len < VIOMMU_FAULT_SIZE) {
			/* §5.13.6.9.2: never split a report; a bad buffer is returned unused. */
			virtq_push(vq, elem, 0);
		} else {
			viommu_fault_encode(&f, ev);
			iov_from_buf(elem->iov, elem->in_num, 0, ev, sizeof(ev));
			virtq_push(vq, elem, sizeof(ev));
			v->events_sent++;
		}
		sent = true;
		pthread_mutex_lock(&v->fault_lock);
		v->pending_head = (v->pending_head + 1) % VIOMMU_PENDING_FAULTS;
		v->pending_count--;
		pthread_mutex_unlock(&v->fault_lock);
	}
	if (sent)
		virtq_notify(vq);
	pthread_mutex_unlock(&v->vdev.lock);
	free(elem);
}

/* ---- request queue (§5.13.6) ---- */

/* Cached ring pointers of the devices behind us were translated with the old
 * mappings: re-translate them before the request completes. */
static void viommu_remap_clients(struct virtio_iommu *v)
{
	for (unsigned i = 0; i < v->nr_clients; i++) {
		struct virtio_device *c = v->clients[i].vdev;

		if (!c)
			continue;   /* external endpoint: synced separately */
		pthread_mutex_lock(&c->lock);
		virtio_device_remap_rings(c);
		pthread_mutex_unlock(&c->lock);
	}
}

static bool changes_translation(uint8_t type)
{
	return type == VIRTIO_IOMMU_T_UNMAP || type == VIRTIO_IOMMU_T_DETACH ||
	       type == VIRTIO_IOMMU_T_ATTACH;
}

/* One chain: gather the readable part, handle, scatter the reply. */
static void viommu_handle_elem(struct virtio_iommu *v, struct virtqueue *vq, struct virtq_elem *elem)
{
	struct viommu_ctx ctx = { .io = &v->io, .features = v->vdev.st.guest_features,
				  .probe_size = VIOMMU_PROBE_PROPS_SIZE };
	uint8_t in[VIOMMU_IN_MAX], out[VIOMMU_OUT_MAX];
	size_t in_len, used = 0;
	uint8_t status = 0;

	v->requests++;
	in_len = iov_to_buf(elem->iov, elem->out_num, 0, in, sizeof(in));
	if (elem->in_len > sizeof(out) ||
	    viommu_req_handle(&ctx, in, in_len, out, elem->in_len, &used, &status) == VIOMMU_DROP) {
		v->bad_requests++;
		virtq_push(vq, elem, 0);
		return;
	}
	if (status != VIRTIO_IOMMU_S_OK)
		v->bad_requests++;
	if (status == VIRTIO_IOMMU_S_OK && in_len && changes_translation(in[0]))
		viommu_remap_clients(v);
	if (status == VIRTIO_IOMMU_S_OK && in_len &&
	    (changes_translation(in[0]) || in[0] == VIRTIO_IOMMU_T_MAP))
		viommu_sync_external(v);
	iov_from_buf(elem->iov + elem->out_num, elem->in_num, 0, out, used);
	virtq_push(vq, elem, (uint32_t)used);
}

void virtio_iommu_process_requests(struct virtio_iommu *v)
{
	struct virtqueue *vq = &v->vdev.vqs[REQUESTQ];
	struct virtq_elem *elem = malloc(sizeof(*elem));
	bool any = false;
	int r;

	if (!elem)
		return;
	pthread_mutex_lock(&v->vdev.lock);
	while ((r = virtq_pop(vq, elem)) > 0) {
		if (r == VIRTQ_FAULT) {
			v->bad_requests++;
			virtq_push(vq, elem, 0);
		} else {
			viommu_handle_elem(v, vq, elem);
		}
		any = true;
	}
	if (any)
		virtq_notify(vq);
	pthread_mutex_unlock(&v->vdev.lock);
	free(elem);
}

/* ---- lifecycle ---- */

int virtio_iommu_init(struct virtio_iommu *v, struct guest_mem *mem, const struct iommu_params *p)
{
	int r;

	memset(v, 0, sizeof(*v));
	v->mem = mem;
	v->fault_fd = -1;
	r = iommu_init(&v->io, p);
	if (r)
		return r;
	r = pthread_mutex_init(&v->fault_lock, NULL);
	if (r) {
		iommu_destroy(&v->io);
		return -r;
	}
	v->fault_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->fault_fd < 0) {
		r = -errno;
		goto err_lock;
	}
	r = virtio_device_init(&v->vdev, "viommu", mem, VIRTIO_ID_IOMMU, 2, VIOMMU_QUEUE_SIZE,
			       &viommu_ops, v);
	if (r)
		goto err_fd;
	v->vdev.host_features |= VIOMMU_FEATURES;
	return 0;

err_fd:
	close(v->fault_fd);
err_lock:
	pthread_mutex_destroy(&v->fault_lock);
	iommu_destroy(&v->io);
	return r;
}

void virtio_iommu_destroy(struct virtio_iommu *v)
{
	for (unsigned i = 0; i < v->nr_clients; i++)
		if (v->clients[i].vdev)
			virtio_device_set_dma_translate(v->clients[i].vdev, NULL, NULL, NULL);
	virtio_device_destroy(&v->vdev);
	if (v->fault_fd >= 0)
		close(v->fault_fd);
	pthread_mutex_destroy(&v->fault_lock);
	iommu_destroy(&v->io);
}

/* ---- info and state ---- */

static int info_domain(void *opaque, const struct iommu_domain_info *d)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return -ENOMEM;
	cJSON_AddNumberToObject(o, "id", d->id);
	cJSON_AddBoolToObject(o, "bypass", d->bypass);
	cJSON_AddNumberToObject(o, "endpoints", d->nr_endpoints);
	cJSON_AddNumberToObject(o, "mappings", (double)d->nr_mappings);
	cJSON_AddItemToArray(opaque, o);
	return 0;
}

static int info_endpoint(void *opaque, const struct iommu_endpoint_info *e)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return -ENOMEM;
	cJSON_AddNumberToObject(o, "id", e->id);
	if (e->attached)
		cJSON_AddNumberToObject(o, "domain", e->domain);
	else
		cJSON_AddNullToObject(o, "domain");
	cJSON_AddNumberToObject(o, "faults", (double)e->faults);
	cJSON_AddNumberToObject(o, "tlb_hits", (double)e->tlb_hits);
	cJSON_AddNumberToObject(o, "tlb_misses", (double)e->tlb_misses);
	cJSON_AddItemToArray(opaque, o);
	return 0;
}

void virtio_iommu_info(struct virtio_iommu *v, struct cJSON *obj)
{
	cJSON *doms = cJSON_AddArrayToObject(obj, "domains");
	cJSON *eps = cJSON_AddArrayToObject(obj, "endpoints");

	cJSON_AddNumberToObject(obj, "mappings", (double)iommu_nr_mappings(&v->io));
	cJSON_AddBoolToObject(obj, "bypass", atomic_load(&v->io.bypass));
	uint64_t requests, events;

	pthread_mutex_lock(&v->vdev.lock);
	requests = v->requests;
	events = v->events_sent;
	pthread_mutex_unlock(&v->vdev.lock);
	cJSON_AddNumberToObject(obj, "requests", (double)requests);
	cJSON_AddNumberToObject(obj, "faults", (double)atomic_load(&v->io.nr_faults));
	cJSON_AddNumberToObject(obj, "fault_events_sent", (double)events);
	if (doms)
		iommu_for_each_domain(&v->io, info_domain, doms);
	if (eps)
		iommu_for_each_endpoint(&v->io, info_endpoint, eps);
}

int virtio_iommu_save(struct virtio_iommu *v, struct state_node *node)
{
	struct state_node *n = state_add_node(node, "iommu", IOMMU_STATE_VERSION);

	if (!n)
		return -ENOMEM;
	return iommu_state_save(&v->io, n);
}

int virtio_iommu_load(struct virtio_iommu *v, const struct state_node *node)
{
	struct state_node n;
	int r;

	if (state_child(node, "iommu", &n))
		return -EINVAL;
	if (state_node_version(&n, 1, IOMMU_STATE_VERSION, NULL))
		return -EINVAL;
	r = iommu_state_load(&v->io, &n);
	if (r)
		return r;
	/* Restored translations: re-translate the clients' ring pointers. */
	viommu_remap_clients(v);
	return 0;
}
