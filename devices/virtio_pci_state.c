/* virtio-pci function state save/load. See virtio_pci_state.h. */
#include "devices/virtio_pci_state.h"

#include <errno.h>
#include <linux/virtio_pci.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/log.h"

#define TRANSPORT_STATE_VERSION 1
#define MSIX_WORDS 5             /* addr_lo, addr_hi, data, ctrl, pending */

/* ---- save ---- */

static int save_pci(struct virtio_pci *vp, struct state_node *parent)
{
	struct pci_device *d = &vp->pci;
	struct state_node *n = state_add_node(parent, "pci", TRANSPORT_STATE_VERSION);
	uint32_t *msix;
	int r;

	if (!n)
		return -ENOMEM;
	r = state_put_bytes(n, "config", d->cfg, PCI_CFG_SIZE);
	if (r || !d->msix.nr)
		return r;
	msix = calloc(d->msix.nr, MSIX_WORDS * sizeof(*msix));
	if (!msix)
		return -ENOMEM;
	pthread_mutex_lock(&d->msix_lock);
	for (unsigned i = 0; i < d->msix.nr; i++) {
		const struct pci_msix_vector *v = &d->msix.vec[i];
		uint32_t *w = msix + MSIX_WORDS * i;

		w[0] = v->addr_lo;
		w[1] = v->addr_hi;
		w[2] = v->data;
		w[3] = v->ctrl;
		w[4] = v->pending;
	}
	pthread_mutex_unlock(&d->msix_lock);
	r = state_put_u32_array(n, "msix", msix, (size_t)d->msix.nr * MSIX_WORDS);
	free(msix);
	return r;
}

static int save_queue(struct virtqueue *vq, struct state_node *parent)
{
	char name[STATE_NAME_MAX];
	struct state_node *n;
	const struct virtq_state *s = &vq->st;

	snprintf(name, sizeof(name), "queue@%u", vq->index);
	n = state_add_node(parent, name, TRANSPORT_STATE_VERSION);
	if (!n)
		return -ENOMEM;
	if (state_put_u32(n, "size", s->size) || state_put_u32(n, "vector", s->msix_vector) ||
	    state_put_u32(n, "enabled", s->enabled) || state_put_u64(n, "desc", s->desc_addr) ||
	    state_put_u64(n, "avail", s->avail_addr) || state_put_u64(n, "used", s->used_addr) ||
	    state_put_u32(n, "last-avail", s->last_avail_idx) ||
	    state_put_u32(n, "used-idx", s->used_idx) ||
	    state_put_u32(n, "signalled-used", s->signalled_used) ||
	    state_put_u32(n, "signalled-valid", s->signalled_used_valid))
		return -ENOMEM;
	return 0;
}

static int save_virtio(struct virtio_device *vdev, struct state_node *parent)
{
	struct state_node *n = state_add_node(parent, "virtio", TRANSPORT_STATE_VERSION);
	const struct virtio_common_state *s = &vdev->st;

	if (!n)
		return -ENOMEM;
	if (state_put_u64(n, "features", s->guest_features) ||
	    state_put_u32(n, "dfselect", s->device_feature_select) ||
	    state_put_u32(n, "gfselect", s->driver_feature_select) ||
	    state_put_u32(n, "status", s->status) ||
	    state_put_u32(n, "config-generation", s->config_generation) ||
	    state_put_u32(n, "config-vector", s->config_vector) ||
	    state_put_u32(n, "queue-select", s->queue_select) ||
	    state_put_u32(n, "isr", atomic_load(&vdev->isr)) ||
	    state_put_u32(n, "broken", vdev->broken))
		return -ENOMEM;
	for (unsigned i = 0; i < vdev->nr_queues; i++)
		if (save_queue(&vdev->vqs[i], n))
			return -ENOMEM;
	return 0;
}

int virtio_pci_state_save(struct virtio_pci *vp, struct state_node *node)
{
	int r;

	pthread_mutex_lock(&vp->vdev->lock);
	r = save_pci(vp, node);
	if (!r)
		r = save_virtio(vp->vdev, node);
	pthread_mutex_unlock(&vp->vdev->lock);
	return r;
}

/* ---- load: parse everything, then apply ---- */

struct virtio_pci_parsed {
	uint8_t cfg[PCI_CFG_SIZE];
	uint32_t *msix;                     /* nr * MSIX_WORDS */
	size_t msix_count;
	struct virtio_common_state st;
	uint32_t isr, broken;
	unsigned nr_vectors;                /* MSI-X table size of this function */
	struct virtq_state q[VIRTIO_MAX_QUEUES];
};

/* §4.1.5.1.2: a vector is either NO_VECTOR or an entry of the MSI-X table;
 * the transport never stores anything else, so a tree that does is hostile. */
static bool vector_ok(const struct virtio_pci_parsed *p, uint16_t v)
{
	return v == VIRTIO_NO_VECTOR || v < p->nr_vectors;
}

static int get_u16(const struct state_node *n, const char *prop, uint16_t *v)
{
	uint32_t x;
	int r = state_get_u32_range(n, prop, 0, 0xffff, &x);

	*v = (uint16_t)x;
	return r;
}

static int parse_queue(struct virtio_device *vdev, const struct state_node *n, struct virtio_pci_parsed *p)
{
	unsigned idx;
	uint32_t enabled, valid, size;
	struct virtq_state *q;

	if (sscanf(state_node_name(n), "queue@%u", &idx) != 1 || idx >= vdev->nr_queues)
		return state_fail(n, "no such queue on this device");
	q = &p->q[idx];
	if (state_node_version(n, 1, TRANSPORT_STATE_VERSION, NULL) ||
	    state_get_u32_range(n, "size", 0, vdev->vqs[idx].max_size, &size) ||
	    get_u16(n, "vector", &q->msix_vector) ||
	    state_get_u32_range(n, "enabled", 0, 1, &enabled) ||
	    state_get_u64(n, "desc", &q->desc_addr) || state_get_u64(n, "avail", &q->avail_addr) ||
	    state_get_u64(n, "used", &q->used_addr) || get_u16(n, "last-avail", &q->last_avail_idx) ||
	    get_u16(n, "used-idx", &q->used_idx) || get_u16(n, "signalled-used", &q->signalled_used) ||
	    state_get_u32_range(n, "signalled-valid", 0, 1, &valid))
		return -EINVAL;
	if (!vector_ok(p, q->msix_vector))
		return state_fail(n, "vector %u is not an MSI-X entry (%u)", q->msix_vector, p->nr_vectors);
	q->size = (uint16_t)size;
	q->enabled = enabled;
	q->signalled_used_valid = valid;
	/* The same rules virtq_enable() applies, checked before anything changes. */
	if (enabled && (!size || (size & (size - 1)) || (q->desc_addr & 15) ||
			(q->avail_addr & 1) || (q->used_addr & 3)))
		return state_fail(n, "enabled queue with bad size or alignment");
	return 0;
}

static int parse_virtio(struct virtio_device *vdev, const struct state_node *n, struct virtio_pci_parsed *p)
{
	struct virtio_common_state *s = &p->st;
	struct state_node c;
	uint32_t v;
	int r;

	if (state_node_version(n, 1, TRANSPORT_STATE_VERSION, NULL) ||
	    state_get_u64(n, "features", &s->guest_features) ||
	    state_get_u32_range(n, "dfselect", 0, 1, &s->device_feature_select) ||
	    state_get_u32_range(n, "gfselect", 0, 1, &s->driver_feature_select) ||
	    state_get_u32_range(n, "status", 0, 0xff, &v))
		return -EINVAL;
	s->status = (uint8_t)v;
	if (state_get_u32_range(n, "config-generation", 0, 0xff, &v))
		return -EINVAL;
	s->config_generation = (uint8_t)v;
	if (get_u16(n, "config-vector", &s->config_vector) ||
	    get_u16(n, "queue-select", &s->queue_select) ||
	    state_get_u32_range(n, "isr", 0, 3, &p->isr) ||
	    state_get_u32_range(n, "broken", 0, 1, &p->broken))
		return -EINVAL;
	if (!vector_ok(p, s->config_vector))
		return state_fail(n, "config-vector %u is not an MSI-X entry (%u)", s->config_vector,
				  p->nr_vectors);
	if (s->guest_features & ~vdev->host_features)
		return state_fail(n, "features 0x%llx not offered by this device",
				  (unsigned long long)(s->guest_features & ~vdev->host_features));
	for (unsigned i = 0; i < vdev->nr_queues; i++) {
		p->q[i].size = vdev->vqs[i].max_size;
		p->q[i].msix_vector = VIRTIO_NO_VECTOR;
	}
	for (r = state_child_first(n, &c); r == 0; r = state_child_next(&c))
		if (parse_queue(vdev, &c, p))
			return -EINVAL;
	return 0;
}

static int parse_pci(struct virtio_pci *vp, const struct state_node *n, struct virtio_pci_parsed *p)
{
	size_t want = (size_t)vp->pci.msix.nr * MSIX_WORDS;

	if (state_node_version(n, 1, TRANSPORT_STATE_VERSION, NULL) ||
	    state_get_bytes(n, "config", p->cfg, PCI_CFG_SIZE))
		return -EINVAL;
	if (!want)
		return 0;
	p->msix = calloc(want, sizeof(*p->msix));
	if (!p->msix)
		return -ENOMEM;
	if (state_get_u32_array(n, "msix", p->msix, want, &p->msix_count))
		return -EINVAL;
	if (p->msix_count != want)
		return state_fail(n, "msix has %zu words, this device needs %zu", p->msix_count, want);
	return 0;
}

static bool dword_writable(const struct pci_device *d, uint32_t off)
{
	return d->wmask[off] | d->wmask[off + 1] | d->wmask[off + 2] | d->wmask[off + 3];
}

static uint32_t cfg_dword(const uint8_t *cfg, uint32_t off)
{
	return (uint32_t)cfg[off] | (uint32_t)cfg[off + 1] << 8 | (uint32_t)cfg[off + 2] << 16 |
	       (uint32_t)cfg[off + 3] << 24;
}

/* Replay the guest-writable parts of the configuration space through the
 * PCI core: BARs first, then everything else, the command register last (so
 * decoding starts with the BARs in place). The PCI_CFG capability's data
 * window is skipped: writing it would perform a BAR access. */
static void apply_pci(struct virtio_pci *vp, const struct virtio_pci_parsed *p)
{
	struct pci_device *d = &vp->pci;
	struct pci_bus *bus = d->bus;
	uint32_t window = vp->pci_cfg_cap + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);

	for (uint32_t off = PCI_BASE_ADDRESS_0; off <= PCI_BASE_ADDRESS_5; off += 4)
		pci_bus_config_write(bus, d->slot, 0, off, cfg_dword(p->cfg, off), 4);
	for (uint32_t off = PCI_CACHE_LINE_SIZE; off < PCI_CFG_SIZE; off += 4) {
		if (off >= PCI_BASE_ADDRESS_0 && off <= PCI_BASE_ADDRESS_5)
			continue;
		if (vp->pci_cfg_cap && off == window)
			continue;
		if (dword_writable(d, off))
			pci_bus_config_write(bus, d->slot, 0, off, cfg_dword(p->cfg, off), 4);
	}
	pci_bus_config_write(bus, d->slot, 0, PCI_COMMAND,
			     (uint32_t)p->cfg[PCI_COMMAND] | (uint32_t)p->cfg[PCI_COMMAND + 1] << 8, 2);
	for (unsigned i = 0; i < d->msix.nr; i++) {
		const uint32_t *w = p->msix + MSIX_WORDS * i;

		for (unsigned k = 0; k < 4; k++)
			pci_msix_mmio_write(d, d->msix.bar, d->msix.table_off + 16ULL * i + 4 * k, &w[k], 4);
		pthread_mutex_lock(&d->msix_lock);
		d->msix.vec[i].pending = w[4] != 0;
		pthread_mutex_unlock(&d->msix_lock);
	}
}

static int apply_virtio(struct virtio_device *vdev, const struct virtio_pci_parsed *p)
{
	int r = 0;

	pthread_mutex_lock(&vdev->lock);
	vdev->st = p->st;
	atomic_store(&vdev->isr, (uint8_t)p->isr);
	vdev->broken = p->broken;
	for (unsigned i = 0; i < vdev->nr_queues && !r; i++) {
		struct virtqueue *vq = &vdev->vqs[i];

		vq->st = p->q[i];
		vq->st.enabled = false;
		vq->desc = NULL;
		vq->avail = NULL;
		vq->used = NULL;
		if (p->q[i].enabled)
			r = virtq_enable(vq);   /* rings translated and checked again */
	}
	pthread_mutex_unlock(&vdev->lock);
	if (r)
		log_err(vdev->name, "restore: a queue's rings are not accessible");
	return r;
}

int virtio_pci_state_parse(struct virtio_pci *vp, const struct state_node *node,
			   struct virtio_pci_parsed **out)
{
	struct virtio_pci_parsed *p = calloc(1, sizeof(*p));
	struct state_node pci, virtio;
	int r;

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->nr_vectors = vp->pci.msix.nr;
	r = state_child(node, "pci", &pci) || state_child(node, "virtio", &virtio) ? -EINVAL : 0;
	if (!r)
		r = parse_pci(vp, &pci, p);
	if (!r)
		r = parse_virtio(vp->vdev, &virtio, p);
	if (r) {
		virtio_pci_parsed_free(p);
		return r;
	}
	*out = p;
	return 0;
}

int virtio_pci_state_apply(struct virtio_pci *vp, const struct virtio_pci_parsed *p)
{
	apply_pci(vp, p);
	return apply_virtio(vp->vdev, p);
}

void virtio_pci_parsed_free(struct virtio_pci_parsed *p)
{
	if (!p)
		return;
	free(p->msix);
	free(p);
}

uint64_t virtio_pci_parsed_features(const struct virtio_pci_parsed *p)
{
	return p->st.guest_features;
}

uint8_t virtio_pci_parsed_status(const struct virtio_pci_parsed *p)
{
	return p->st.status;
}

int virtio_pci_state_load(struct virtio_pci *vp, const struct state_node *node)
{
	struct virtio_pci_parsed *p;
	int r = virtio_pci_state_parse(vp, node, &p);

	if (r)
		return r;
	r = virtio_pci_state_apply(vp, p);
	virtio_pci_parsed_free(p);
	return r;
}
