/* Virtio modern PCI transport. See virtio_pci.h for the BAR layout. */
#include "devices/virtio_pci.h"

#include <errno.h>
#include <linux/virtio_pci.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "vmm/log.h"

#define COMMON_CFG_SIZE 0x38   /* struct virtio_pci_common_cfg up to queue_device */

/* ---- common configuration (§4.1.4.3) ------------------------------------- */

static struct virtqueue *selected_vq(struct virtio_device *vdev)
{
	return vdev->st.queue_select < vdev->nr_queues ? &vdev->vqs[vdev->st.queue_select] : NULL;
}

/* Snapshot the common configuration as the guest sees it. Lock held. */
static void common_cfg_build(struct virtio_device *vdev, struct virtio_pci_common_cfg *c)
{
	struct virtqueue *vq = selected_vq(vdev);
	uint32_t sel = vdev->st.device_feature_select;

	memset(c, 0, sizeof(*c));
	c->device_feature_select = sel;
	c->device_feature = sel < 2 ? (uint32_t)(vdev->host_features >> (32 * sel)) : 0;
	c->guest_feature_select = vdev->st.driver_feature_select;
	c->guest_feature = vdev->st.driver_feature_select < 2 ?
		(uint32_t)(vdev->st.guest_features >> (32 * vdev->st.driver_feature_select)) : 0;
	c->msix_config = vdev->st.config_vector;
	c->num_queues = (uint16_t)vdev->nr_queues;
	c->device_status = vdev->st.status;
	c->config_generation = vdev->st.config_generation;
	c->queue_select = vdev->st.queue_select;
	if (!vq)
		return;
	c->queue_size = vq->st.size;
	c->queue_msix_vector = vq->st.msix_vector;
	c->queue_enable = vq->st.enabled;
	c->queue_notify_off = (uint16_t)vq->index;
	c->queue_desc_lo = (uint32_t)vq->st.desc_addr;
	c->queue_desc_hi = (uint32_t)(vq->st.desc_addr >> 32);
	c->queue_avail_lo = (uint32_t)vq->st.avail_addr;
	c->queue_avail_hi = (uint32_t)(vq->st.avail_addr >> 32);
	c->queue_used_lo = (uint32_t)vq->st.used_addr;
	c->queue_used_hi = (uint32_t)(vq->st.used_addr >> 32);
}

#define FIELD_HIT(field) \
	(off < offsetof(struct virtio_pci_common_cfg, field) + sizeof(c.field) && \
	 offsetof(struct virtio_pci_common_cfg, field) < off + len)

static uint16_t msix_vector_or_none(struct virtio_pci *vp, uint16_t v)
{
	/* §4.1.5.1.2: an unmappable vector reads back as NO_VECTOR. */
	return v < vp->pci.msix.nr ? v : VIRTIO_NO_VECTOR;
}

/* Apply the fields a write touched, using the merged snapshot @c. Lock held. */
static void common_cfg_apply(struct virtio_pci *vp, const struct virtio_pci_common_cfg c,
			     uint32_t off, uint32_t len)
{
	struct virtio_device *vdev = vp->vdev;
	struct virtqueue *vq;

	if (FIELD_HIT(device_feature_select))
		vdev->st.device_feature_select = c.device_feature_select;
	if (FIELD_HIT(guest_feature_select))
		vdev->st.driver_feature_select = c.guest_feature_select;
	if (FIELD_HIT(guest_feature))
		virtio_device_set_guest_features(vdev, vdev->st.driver_feature_select, c.guest_feature);
	if (FIELD_HIT(msix_config))
		vdev->st.config_vector = msix_vector_or_none(vp, c.msix_config);
	if (FIELD_HIT(queue_select))
		vdev->st.queue_select = c.queue_select;
	if (FIELD_HIT(device_status))
		virtio_device_set_status(vdev, c.device_status);
	vq = selected_vq(vdev);
	if (!vq)
		return;
	if (FIELD_HIT(queue_msix_vector))
		vq->st.msix_vector = msix_vector_or_none(vp, c.queue_msix_vector);
	/* Size and ring addresses are frozen once the queue is enabled (§4.1.4.3.2). */
	if (!vq->st.enabled) {
		if (FIELD_HIT(queue_size))
			vq->st.size = c.queue_size;
		if (FIELD_HIT(queue_desc_lo) || FIELD_HIT(queue_desc_hi))
			vq->st.desc_addr = (uint64_t)c.queue_desc_hi << 32 | c.queue_desc_lo;
		if (FIELD_HIT(queue_avail_lo) || FIELD_HIT(queue_avail_hi))
			vq->st.avail_addr = (uint64_t)c.queue_avail_hi << 32 | c.queue_avail_lo;
		if (FIELD_HIT(queue_used_lo) || FIELD_HIT(queue_used_hi))
			vq->st.used_addr = (uint64_t)c.queue_used_hi << 32 | c.queue_used_lo;
	}
	if (FIELD_HIT(queue_enable) && c.queue_enable == 1 && !vdev->broken)
		virtq_enable(vq);
}

static void common_cfg_read(struct virtio_pci *vp, uint32_t off, void *data, uint32_t len)
{
	struct virtio_pci_common_cfg c;

	if (off >= COMMON_CFG_SIZE || len > COMMON_CFG_SIZE - off) {
		memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&vp->vdev->lock);
	common_cfg_build(vp->vdev, &c);
	pthread_mutex_unlock(&vp->vdev->lock);
	memcpy(data, (uint8_t *)&c + off, len);
}

static void common_cfg_write(struct virtio_pci *vp, uint32_t off, const void *data, uint32_t len)
{
	struct virtio_pci_common_cfg c;

	if (off >= COMMON_CFG_SIZE || len > COMMON_CFG_SIZE - off)
		return;
	pthread_mutex_lock(&vp->vdev->lock);
	common_cfg_build(vp->vdev, &c);
	memcpy((uint8_t *)&c + off, data, len);
	common_cfg_apply(vp, c, off, len);
	pthread_mutex_unlock(&vp->vdev->lock);
}

/* ---- BAR dispatch ---------------------------------------------------------- */

static void notify_write(struct virtio_pci *vp, uint64_t off)
{
	uint64_t one = 1, q = off / VIRTIO_PCI_NOTIFY_MULT;

	if (q >= vp->vdev->nr_queues)
		return;
	vp->kicks_trapped++;
	if (write(vp->vdev->vqs[q].kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_err(vp->vdev->name, "kick eventfd: %s", strerror_safe(errno));
}

void virtio_pci_bar_read(struct virtio_pci *vp, uint64_t off, void *data, uint32_t len)
{
	struct virtio_device *vdev = vp->vdev;
	uint64_t region = off & ~(uint64_t)(VIRTIO_PCI_REGION_SIZE - 1), rel = off - region;

	if (rel + len > VIRTIO_PCI_REGION_SIZE) {
		memset(data, 0xff, len);
		return;
	}
	switch (region) {
	case VIRTIO_PCI_COMMON_OFF:
		common_cfg_read(vp, (uint32_t)rel, data, len);
		break;
	case VIRTIO_PCI_ISR_OFF:
		/* §4.1.4.5: reading ISR status clears it. */
		memset(data, 0, len);
		if (rel == 0)
			*(uint8_t *)data = atomic_exchange(&vdev->isr, 0);
		break;
	case VIRTIO_PCI_DEVICE_OFF:
		memset(data, 0, len);
		if (vdev->ops && vdev->ops->get_config) {
			pthread_mutex_lock(&vdev->lock);
			vdev->ops->get_config(vdev, (uint32_t)rel, data, len);
			pthread_mutex_unlock(&vdev->lock);
		}
		break;
	default:
		memset(data, 0, len);   /* notify region reads as 0 */
	}
}

void virtio_pci_bar_write(struct virtio_pci *vp, uint64_t off, const void *data, uint32_t len)
{
	struct virtio_device *vdev = vp->vdev;
	uint64_t region = off & ~(uint64_t)(VIRTIO_PCI_REGION_SIZE - 1), rel = off - region;

	if (rel + len > VIRTIO_PCI_REGION_SIZE)
		return;
	switch (region) {
	case VIRTIO_PCI_COMMON_OFF:
		common_cfg_write(vp, (uint32_t)rel, data, len);
		break;
	case VIRTIO_PCI_DEVICE_OFF:
		if (vdev->ops && vdev->ops->set_config) {
			pthread_mutex_lock(&vdev->lock);
			vdev->ops->set_config(vdev, (uint32_t)rel, data, len);
			pthread_mutex_unlock(&vdev->lock);
		}
		break;
	case VIRTIO_PCI_NOTIFY_OFF:
		notify_write(vp, rel);
		break;
	default:
		break;   /* ISR is read-only */
	}
}

static void vp_bar_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	virtio_pci_bar_read(opaque, off, data, len);
}

static void vp_bar_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	virtio_pci_bar_write(opaque, off, data, len);
}

static const struct bus_ops virtio_pci_bar_ops = { .read = vp_bar_read, .write = vp_bar_write };

/* ---- ioeventfds ------------------------------------------------------------- */

static void virtio_pci_ioeventfds(struct virtio_pci *vp, bool assign)
{
	struct pci_bus *bus = vp->pci.bus;

	if (!bus || !bus->irq || !bus->irq->ioeventfd || vp->ioeventfds_on == assign)
		return;
	for (unsigned i = 0; i < vp->vdev->nr_queues; i++) {
		int ret = bus->irq->ioeventfd(bus->irq_opaque, vp->vdev->vqs[i].kick_fd,
					      vp->notify_base + VIRTIO_PCI_NOTIFY_MULT * i, 2, false,
					      assign);
		/* Without an ioeventfd the trapped write path still works. */
		if (ret)
			log_warn(vp->vdev->name, "ioeventfd for queue %u: %s", i, strerror_safe(-ret));
	}
	vp->ioeventfds_on = assign;
}

static void virtio_pci_bar_moved(struct pci_device *d, int bar, uint64_t addr, bool mapped)
{
	struct virtio_pci *vp = d->opaque;

	if (bar != VIRTIO_PCI_BAR)
		return;
	virtio_pci_ioeventfds(vp, false);
	if (mapped) {
		vp->notify_base = addr + VIRTIO_PCI_NOTIFY_OFF;
		virtio_pci_ioeventfds(vp, true);
	}
}

/* ---- VIRTIO_PCI_CAP_PCI_CFG window (§4.1.4.9) ----------------------------- */

#define PCI_CFG_CAP_BAR    (offsetof(struct virtio_pci_cfg_cap, cap.bar))
#define PCI_CFG_CAP_OFFSET (offsetof(struct virtio_pci_cfg_cap, cap.offset))
#define PCI_CFG_CAP_LENGTH (offsetof(struct virtio_pci_cfg_cap, cap.length))
#define PCI_CFG_CAP_DATA   (offsetof(struct virtio_pci_cfg_cap, pci_cfg_data))

static bool pci_cfg_window(struct virtio_pci *vp, uint32_t off, uint32_t len, uint32_t *boff,
			   uint32_t *blen)
{
	uint32_t data = vp->pci_cfg_cap + PCI_CFG_CAP_DATA;

	if (!vp->pci_cfg_cap || off != data || len != 4)
		return false;
	*boff = pci_cfg_get32(&vp->pci, vp->pci_cfg_cap + PCI_CFG_CAP_OFFSET);
	*blen = pci_cfg_get32(&vp->pci, vp->pci_cfg_cap + PCI_CFG_CAP_LENGTH);
	return vp->pci.cfg[vp->pci_cfg_cap + PCI_CFG_CAP_BAR] == VIRTIO_PCI_BAR &&
	       (*blen == 1 || *blen == 2 || *blen == 4) && *boff < VIRTIO_PCI_BAR_SIZE &&
	       (*boff & (*blen - 1)) == 0;
}

static void virtio_pci_config_read(struct pci_device *d, uint32_t off, uint32_t *val, uint32_t len)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t boff, blen, v = 0;

	if (!pci_cfg_window(vp, off, len, &boff, &blen))
		return;
	virtio_pci_bar_read(vp, boff, &v, blen);
	*val = v;
}

static void virtio_pci_config_write(struct pci_device *d, uint32_t off, uint32_t val, uint32_t len)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t boff, blen;

	if (pci_cfg_window(vp, off, len, &boff, &blen))
		virtio_pci_bar_write(vp, boff, &val, blen);
}

static const struct pci_device_ops virtio_pci_dev_ops = {
	.config_read = virtio_pci_config_read,
	.config_write = virtio_pci_config_write,
	.bar_moved = virtio_pci_bar_moved,
};

/* ---- construction ------------------------------------------------------------ */

static int virtio_pci_notify(void *opaque, uint16_t vector)
{
	struct virtio_pci *vp = opaque;

	if (vector == VIRTIO_NO_VECTOR)
		return 0;   /* MSI-X only: no INTx fallback */
	return pci_msix_notify(&vp->pci, vector) < 0 ? -EIO : 0;
}

static const struct virtio_transport_ops virtio_pci_transport = { .notify = virtio_pci_notify };

static int add_virtio_cap(struct virtio_pci *vp, uint8_t type, uint32_t offset, uint32_t length,
			  uint8_t cap_len, uint16_t *at)
{
	uint16_t off;
	int ret = pci_cap_add(&vp->pci, PCI_CAP_ID_VNDR, cap_len, &off);

	if (ret)
		return ret;
	vp->pci.cfg[off + offsetof(struct virtio_pci_cap, cap_len)] = cap_len;
	vp->pci.cfg[off + offsetof(struct virtio_pci_cap, cfg_type)] = type;
	vp->pci.cfg[off + offsetof(struct virtio_pci_cap, bar)] = VIRTIO_PCI_BAR;
	pci_cfg_set32(&vp->pci, off + offsetof(struct virtio_pci_cap, offset), offset);
	pci_cfg_set32(&vp->pci, off + offsetof(struct virtio_pci_cap, length), length);
	if (at)
		*at = off;
	return 0;
}

int virtio_pci_init(struct virtio_pci *vp, struct virtio_device *vdev, struct pci_bus *bus,
		    uint16_t pci_device_id, uint32_t class_code)
{
	unsigned nvec = vdev->nr_queues + 1;
	uint16_t notify_cap;
	int ret;

	memset(vp, 0, sizeof(*vp));
	vp->vdev = vdev;
	pci_device_init(&vp->pci, vdev->name, &virtio_pci_dev_ops, vp);
	/* §4.1.2.1: modern-only devices have revision >= 1; subsystem id >= 0x40. */
	pci_config_set_ids(&vp->pci, VIRTIO_PCI_VENDOR, pci_device_id, class_code, 1);
	pci_config_set_subsystem(&vp->pci, VIRTIO_PCI_VENDOR, 0x40 + (uint16_t)vdev->device_id);
	ret = pci_bar_define(&vp->pci, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, PCI_BAR_MMIO64,
			     &virtio_pci_bar_ops, vp);
	if (ret)
		goto err;
	ret = pci_msix_init(&vp->pci, nvec, VIRTIO_PCI_BAR, VIRTIO_PCI_MSIX_TABLE, VIRTIO_PCI_MSIX_PBA);
	if (ret)
		goto err;
	ret = add_virtio_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF,
			     VIRTIO_PCI_REGION_SIZE, sizeof(struct virtio_pci_cap), NULL);
	ret = ret ?: add_virtio_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF,
				    VIRTIO_PCI_REGION_SIZE, sizeof(struct virtio_pci_cap), NULL);
	ret = ret ?: add_virtio_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFF,
				    VIRTIO_PCI_REGION_SIZE, sizeof(struct virtio_pci_cap), NULL);
	ret = ret ?: add_virtio_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF,
				    VIRTIO_PCI_REGION_SIZE, sizeof(struct virtio_pci_notify_cap),
				    &notify_cap);
	if (ret)
		goto err;
	pci_cfg_set32(&vp->pci, notify_cap + offsetof(struct virtio_pci_notify_cap, notify_off_multiplier),
		      VIRTIO_PCI_NOTIFY_MULT);
	ret = add_virtio_cap(vp, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, sizeof(struct virtio_pci_cfg_cap),
			     &vp->pci_cfg_cap);
	if (ret)
		goto err;
	pci_cfg_set_wmask(&vp->pci, vp->pci_cfg_cap + PCI_CFG_CAP_BAR, 1, 0xff);
	pci_cfg_set_wmask(&vp->pci, vp->pci_cfg_cap + PCI_CFG_CAP_OFFSET, 4, 0xff);
	pci_cfg_set_wmask(&vp->pci, vp->pci_cfg_cap + PCI_CFG_CAP_LENGTH, 4, 0xff);
	pci_cfg_set_wmask(&vp->pci, vp->pci_cfg_cap + PCI_CFG_CAP_DATA, 4, 0xff);

	vdev->transport = &virtio_pci_transport;
	vdev->transport_opaque = vp;
	ret = pci_bus_add_device(bus, &vp->pci, -1);
	if (ret)
		goto err;
	return 0;
err:
	log_err(vdev->name, "virtio-pci setup failed: %s", strerror_safe(-ret));
	pci_device_destroy(&vp->pci);
	return ret;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (vp->pci.bus)
		pci_bus_remove_device(vp->pci.bus, &vp->pci);   /* bar_moved drops ioeventfds */
	pci_device_destroy(&vp->pci);
}
