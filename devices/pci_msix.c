/* MSI-X emulation (PCI 3.0 §6.8.2): capability, vector table, PBA, masking,
 * and delivery through KVM irqfds. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/pci.h"
#include "vmm/log.h"

#define MSIX_ENTRY_SIZE 16
#define MSIX_CTRL_MASKED 1u

int pci_msix_init(struct pci_device *d, unsigned nr_vectors, int bar, uint32_t table_off,
		  uint32_t pba_off)
{
	uint16_t off;
	int ret;

	if (nr_vectors == 0 || nr_vectors > PCI_MSIX_MAX_VECTORS || bar < 0 ||
	    bar >= PCI_NUM_BARS || d->bars[bar].type == PCI_BAR_NONE ||
	    d->bars[bar].type == PCI_BAR_IO || (table_off & 7) || (pba_off & 7) ||
	    table_off + nr_vectors * MSIX_ENTRY_SIZE > d->bars[bar].size ||
	    pba_off + ((nr_vectors + 63) / 64) * 8 > d->bars[bar].size)
		return -EINVAL;
	d->msix.vec = calloc(nr_vectors, sizeof(*d->msix.vec));
	if (!d->msix.vec)
		return -ENOMEM;
	ret = pci_cap_add(d, PCI_CAP_ID_MSIX, PCI_CAP_MSIX_SIZEOF, &off);
	if (ret) {
		free(d->msix.vec);
		d->msix.vec = NULL;
		return ret;
	}
	for (unsigned i = 0; i < nr_vectors; i++) {
		d->msix.vec[i].ctrl = MSIX_CTRL_MASKED;   /* reset state: masked */
		d->msix.vec[i].fd = -1;
	}
	d->msix.nr = nr_vectors;
	d->msix.cap_off = (uint8_t)off;
	d->msix.bar = bar;
	d->msix.table_off = table_off;
	d->msix.pba_off = pba_off;
	pci_cfg_set16(d, off + PCI_MSIX_FLAGS, (uint16_t)(nr_vectors - 1));
	pci_cfg_set32(d, off + PCI_MSIX_TABLE, table_off | (uint32_t)bar);
	pci_cfg_set32(d, off + PCI_MSIX_PBA, pba_off | (uint32_t)bar);
	/* Only Enable (bit 15) and Function Mask (bit 14) are writable. */
	d->wmask[off + PCI_MSIX_FLAGS + 1] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
	return 0;
}

/* Route the vector to a GSI with an irqfd on first use. Caller holds msix_lock. */
static int pci_msix_route(struct pci_device *d, struct pci_msix_vector *v)
{
	const struct pci_irq_ops *irq = d->bus ? d->bus->irq : NULL;
	void *op = d->bus ? d->bus->irq_opaque : NULL;
	uint64_t addr = (uint64_t)v->addr_hi << 32 | v->addr_lo;
	int ret;

	if (v->routed)
		return 0;
	if (!irq || !irq->msi_route_add || !irq->irqfd)
		return -ENODEV;
	v->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->fd < 0)
		return -errno;
	ret = irq->msi_route_add(op, addr, v->data, &v->gsi);
	if (ret)
		goto err;
	ret = irq->irqfd(op, v->fd, v->gsi, true);
	if (ret)
		goto err;
	v->routed = true;
	return 0;
err:
	close(v->fd);
	v->fd = -1;
	return ret;
}

static bool pci_msix_vector_blocked(const struct pci_device *d, const struct pci_msix_vector *v)
{
	return !d->msix.enabled || d->msix.masked || (v->ctrl & MSIX_CTRL_MASKED);
}

/* Caller holds msix_lock. */
static int pci_msix_deliver(struct pci_device *d, struct pci_msix_vector *v)
{
	uint64_t one = 1;
	int ret = pci_msix_route(d, v);

	if (ret) {
		log_err(d->name, "cannot route MSI-X vector %u: %s",
			(unsigned)(v - d->msix.vec), strerror_safe(-ret));
		return ret;
	}
	if (write(v->fd, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
		return -errno;
	d->msix.delivered++;
	return 0;
}

int pci_msix_notify(struct pci_device *d, unsigned vector)
{
	struct pci_msix_vector *v;
	int ret;

	pthread_mutex_lock(&d->msix_lock);
	if (vector >= d->msix.nr) {
		ret = -EINVAL;
		goto out;
	}
	v = &d->msix.vec[vector];
	if (pci_msix_vector_blocked(d, v)) {
		v->pending = true;
		d->msix.pended++;
		ret = 1;
		goto out;
	}
	ret = pci_msix_deliver(d, v);
out:
	pthread_mutex_unlock(&d->msix_lock);
	return ret;
}

bool pci_msix_enabled(struct pci_device *d)
{
	bool on;

	pthread_mutex_lock(&d->msix_lock);
	on = d->msix.enabled;
	pthread_mutex_unlock(&d->msix_lock);
	return on;
}

bool pci_msix_vector_masked(struct pci_device *d, unsigned vector)
{
	bool masked = true;

	pthread_mutex_lock(&d->msix_lock);
	if (vector < d->msix.nr)
		masked = pci_msix_vector_blocked(d, &d->msix.vec[vector]);
	pthread_mutex_unlock(&d->msix_lock);
	return masked;
}

/* Deliver every pending vector that is no longer masked. Caller holds msix_lock. */
static void pci_msix_flush_pending(struct pci_device *d)
{
	for (unsigned i = 0; i < d->msix.nr; i++) {
		struct pci_msix_vector *v = &d->msix.vec[i];

		if (v->pending && !pci_msix_vector_blocked(d, v) && pci_msix_deliver(d, v) == 0)
			v->pending = false;
	}
}

void pci_msix_config_written(struct pci_device *d)
{
	uint16_t ctrl = pci_cfg_get16(d, d->msix.cap_off + PCI_MSIX_FLAGS);
	bool enabled = ctrl & PCI_MSIX_FLAGS_ENABLE, masked = ctrl & PCI_MSIX_FLAGS_MASKALL;
	bool changed;

	pthread_mutex_lock(&d->msix_lock);
	changed = enabled != d->msix.enabled || masked != d->msix.masked;
	d->msix.enabled = enabled;
	d->msix.masked = masked;
	if (changed)
		pci_msix_flush_pending(d);
	pthread_mutex_unlock(&d->msix_lock);
	if (changed && d->ops && d->ops->msix_changed)
		d->ops->msix_changed(d, enabled, masked);
}

static bool pci_msix_in(uint64_t off, uint32_t len, uint64_t start, uint64_t size)
{
	return off >= start && off - start < size;
}

bool pci_msix_mmio_read(struct pci_device *d, int bar, uint64_t off, void *data, uint32_t len)
{
	struct pci_msix *m = &d->msix;
	uint64_t val = 0;

	if (!m->nr || bar != m->bar)
		return false;
	pthread_mutex_lock(&d->msix_lock);
	if (pci_msix_in(off, len, m->table_off, (uint64_t)m->nr * MSIX_ENTRY_SIZE)) {
		uint64_t rel = off - m->table_off;
		const struct pci_msix_vector *v = &m->vec[rel / MSIX_ENTRY_SIZE];
		uint32_t words[4] = { v->addr_lo, v->addr_hi, v->data, v->ctrl };
		uint8_t bytes[16];

		for (int i = 0; i < 4; i++)
			for (int b = 0; b < 4; b++)
				bytes[4 * i + b] = (words[i] >> (8 * b)) & 0xff;
		for (uint32_t i = 0; i < len && (rel % 16) + i < 16; i++)
			val |= (uint64_t)bytes[(rel % 16) + i] << (8 * i);
	} else if (pci_msix_in(off, len, m->pba_off, ((m->nr + 63) / 64) * 8)) {
		uint64_t bit0 = (off - m->pba_off) * 8;

		for (uint32_t i = 0; i < len * 8; i++)
			if (bit0 + i < m->nr && m->vec[bit0 + i].pending)
				val |= 1ULL << i;
	} else {
		pthread_mutex_unlock(&d->msix_lock);
		return false;
	}
	pthread_mutex_unlock(&d->msix_lock);
	for (uint32_t i = 0; i < len; i++)
		((uint8_t *)data)[i] = (val >> (8 * i)) & 0xff;
	return true;
}

/* Apply one dword write to table entry @v at dword index @word. Caller holds msix_lock. */
static void pci_msix_entry_write(struct pci_device *d, struct pci_msix_vector *v, unsigned word,
				 uint32_t val)
{
	const struct pci_irq_ops *irq = d->bus ? d->bus->irq : NULL;

	switch (word) {
	case 0: v->addr_lo = val & ~3u; break;
	case 1: v->addr_hi = val; break;
	case 2: v->data = val; break;
	case 3: v->ctrl = val & MSIX_CTRL_MASKED; break;
	}
	if (word < 3 && v->routed && irq && irq->msi_route_update) {
		int ret = irq->msi_route_update(d->bus->irq_opaque, v->gsi,
						(uint64_t)v->addr_hi << 32 | v->addr_lo, v->data);
		if (ret)
			log_err(d->name, "cannot update MSI-X route: %s", strerror_safe(-ret));
	}
	/* PCI 3.0 §6.8.2.9: unmasking a vector with its pending bit set sends it. */
	if (word == 3 && v->pending && !pci_msix_vector_blocked(d, v) && pci_msix_deliver(d, v) == 0)
		v->pending = false;
}

bool pci_msix_mmio_write(struct pci_device *d, int bar, uint64_t off, const void *data,
			 uint32_t len)
{
	struct pci_msix *m = &d->msix;
	uint64_t val = 0;

	if (!m->nr || bar != m->bar)
		return false;
	if (pci_msix_in(off, len, m->pba_off, ((m->nr + 63) / 64) * 8))
		return true;   /* PBA is read-only */
	if (!pci_msix_in(off, len, m->table_off, (uint64_t)m->nr * MSIX_ENTRY_SIZE))
		return false;
	/* Only aligned dword and qword accesses are defined (§6.8.2). */
	if ((len != 4 && len != 8) || (off & (len - 1)))
		return true;
	for (uint32_t i = 0; i < len; i++)
		val |= (uint64_t)((const uint8_t *)data)[i] << (8 * i);
	pthread_mutex_lock(&d->msix_lock);
	{
		uint64_t rel = off - m->table_off;
		struct pci_msix_vector *v = &m->vec[rel / MSIX_ENTRY_SIZE];
		unsigned word = (unsigned)(rel % MSIX_ENTRY_SIZE) / 4;

		pci_msix_entry_write(d, v, word, (uint32_t)val);
		if (len == 8)
			pci_msix_entry_write(d, v, word + 1, (uint32_t)(val >> 32));
	}
	pthread_mutex_unlock(&d->msix_lock);
	return true;
}
