/* virtio-iommu as a VM device. See virtio_iommu_vm.h. */
#include "devices/virtio_iommu_vm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "devices/viot.h"
#include "devices/virtio_pci_state.h"
#include "devices/virtio_net.h"
#include "migration/state.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static struct viommu_vm *to_vv(struct device *dev)
{
	return container_of(dev, struct viommu_vm, dev);
}

static void drain(int fd)
{
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v));

	(void)n;
}

static void on_request_kick(void *opaque, uint32_t events)
{
	struct viommu_vm *v = opaque;

	drain(v->viommu.vdev.vqs[0].kick_fd);
	virtio_iommu_process_requests(&v->viommu);
}

/* The driver added event buffers, or a device behind us faulted. */
static void on_event_kick(void *opaque, uint32_t events)
{
	struct viommu_vm *v = opaque;

	drain(v->viommu.vdev.vqs[1].kick_fd);
	virtio_iommu_flush_faults(&v->viommu);
}

static void on_fault(void *opaque, uint32_t events)
{
	struct viommu_vm *v = opaque;

	virtio_iommu_flush_faults(&v->viommu);   /* reads fault_fd itself */
}

static void viommu_vm_reset(struct device *dev)
{
	struct viommu_vm *v = to_vv(dev);

	pthread_mutex_lock(&v->viommu.vdev.lock);
	virtio_device_reset(&v->viommu.vdev);
	pthread_mutex_unlock(&v->viommu.vdev.lock);
	/* A VM reset is a system reset: config.bypass back to its initial value (§5.13.4.2). */
	iommu_system_reset(&v->viommu.io);
}

static void viommu_vm_destroy(struct device *dev)
{
	struct viommu_vm *v = to_vv(dev);

	if (v->on_loop) {
		evl_del_fd(&v->vm->loop, v->viommu.vdev.vqs[0].kick_fd);
		evl_del_fd(&v->vm->loop, v->viommu.vdev.vqs[1].kick_fd);
		evl_del_fd(&v->vm->loop, v->viommu.fault_fd);
	}
	virtio_pci_destroy(&v->vp);
	virtio_iommu_destroy(&v->viommu);
	free(v->viot);
	free(v);
}

/* Device node: the PCI function and virtio transport under "transport"
 * (virtio_pci_state.h), the translation state under "iommu"
 * (virtio_iommu_state.h). */
#define VIOMMU_DEVICE_STATE_VERSION 1

static int viommu_vm_save(struct device *dev, struct state_node *node)
{
	struct viommu_vm *v = to_vv(dev);
	struct state_node *t;
	int r = state_set_version(node, VIOMMU_DEVICE_STATE_VERSION);

	if (r)
		return r;
	t = state_add_node(node, "transport", VIOMMU_DEVICE_STATE_VERSION);
	if (!t)
		return -ENOMEM;
	r = virtio_pci_state_save(&v->vp, t);
	return r ? r : virtio_iommu_save(&v->viommu, node);
}

static int viommu_vm_load(struct device *dev, const struct state_node *node)
{
	struct viommu_vm *v = to_vv(dev);
	struct state_node t;
	int r;

	if (state_node_version(node, 1, VIOMMU_DEVICE_STATE_VERSION, NULL) ||
	    state_child(node, "transport", &t) ||
	    state_node_version(&t, 1, VIOMMU_DEVICE_STATE_VERSION, NULL))
		return -EINVAL;
	r = virtio_pci_state_load(&v->vp, &t);
	return r ? r : virtio_iommu_load(&v->viommu, node);
}

static void viommu_vm_info(struct device *dev, struct cJSON *obj)
{
	struct viommu_vm *v = to_vv(dev);

	cJSON_AddNumberToObject(obj, "pci_slot", v->vp.pci.slot);
	virtio_iommu_info(&v->viommu, obj);
}

static int sum_endpoint(void *opaque, const struct iommu_endpoint_info *e)
{
	uint64_t *sum = opaque;

	sum[0] += e->tlb_hits;
	sum[1] += e->tlb_misses;
	return 0;
}

static void viommu_vm_counters(struct device *dev, struct cJSON *obj)
{
	struct viommu_vm *v = to_vv(dev);
	struct virtio_iommu *vi = &v->viommu;
	uint64_t tlb[2] = { 0, 0 }, requests, bad, events, dropped;

	pthread_mutex_lock(&vi->vdev.lock);
	requests = vi->requests;
	bad = vi->bad_requests;
	events = vi->events_sent;
	pthread_mutex_unlock(&vi->vdev.lock);
	pthread_mutex_lock(&vi->fault_lock);
	dropped = vi->faults_dropped;
	pthread_mutex_unlock(&vi->fault_lock);
	iommu_for_each_endpoint(&vi->io, sum_endpoint, tlb);
	cJSON_AddNumberToObject(obj, "requests", (double)requests);
	cJSON_AddNumberToObject(obj, "bad_requests", (double)bad);
	cJSON_AddNumberToObject(obj, "map_ops", (double)atomic_load(&vi->io.nr_map_ops));
	cJSON_AddNumberToObject(obj, "unmap_ops", (double)atomic_load(&vi->io.nr_unmap_ops));
	cJSON_AddNumberToObject(obj, "faults", (double)atomic_load(&vi->io.nr_faults));
	cJSON_AddNumberToObject(obj, "fault_events_sent", (double)events);
	cJSON_AddNumberToObject(obj, "fault_events_dropped", (double)dropped);
	cJSON_AddNumberToObject(obj, "translation_cache_hits", (double)tlb[0]);
	cJSON_AddNumberToObject(obj, "translation_cache_misses", (double)tlb[1]);
}

static void kick(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one));

	(void)n;   /* EAGAIN: a kick is pending anyway */
}

/* Requests and fault reports complete into guest RAM: none while paused. */
static void viommu_vm_quiesce(struct device *dev)
{
	virtio_device_quiesce(&to_vv(dev)->viommu.vdev, true);
}

/* Look at both queues again: kicks consumed while quiesced found nothing. */
static void viommu_vm_unquiesce(struct device *dev)
{
	struct viommu_vm *v = to_vv(dev);

	virtio_device_quiesce(&v->viommu.vdev, false);
	kick(v->viommu.vdev.vqs[0].kick_fd);
	kick(v->viommu.vdev.vqs[1].kick_fd);
}

static const struct device_ops viommu_vm_ops = {
	.type = "virtio-iommu",
	.reset = viommu_vm_reset,
	.destroy = viommu_vm_destroy,
	.save = viommu_vm_save,
	.load = viommu_vm_load,
	.info = viommu_vm_info,
	.counters = viommu_vm_counters,
	.quiesce = viommu_vm_quiesce,
	.unquiesce = viommu_vm_unquiesce,
};

int viommu_vm_create(struct vm *vm, struct pci_bus *bus, struct viommu_vm **out)
{
	struct viommu_vm *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	v->vm = vm;
	r = virtio_iommu_init(&v->viommu, &vm->mem, NULL);
	if (r)
		goto err_free;
	snprintf(v->viommu.vdev.name, sizeof(v->viommu.vdev.name), "iommu0");
	r = virtio_pci_init(&v->vp, &v->viommu.vdev, bus, VIRTIO_PCI_DEVICE_BASE + VIRTIO_ID_IOMMU,
			    VIOMMU_PCI_CLASS);
	if (r)
		goto err_viommu;
	r = evl_add_fd(&vm->loop, v->viommu.vdev.vqs[0].kick_fd, EPOLLIN, on_request_kick, v);
	if (!r)
		r = evl_add_fd(&vm->loop, v->viommu.vdev.vqs[1].kick_fd, EPOLLIN, on_event_kick, v);
	if (!r)
		r = evl_add_fd(&vm->loop, v->viommu.fault_fd, EPOLLIN, on_fault, v);
	if (r) {
		evl_del_fd(&vm->loop, v->viommu.vdev.vqs[0].kick_fd);
		evl_del_fd(&vm->loop, v->viommu.vdev.vqs[1].kick_fd);
		goto err_pci;
	}
	v->on_loop = true;
	vm_add_device(vm, &v->dev, &viommu_vm_ops, "iommu0");
	*out = v;
	return 0;

err_pci:
	virtio_pci_destroy(&v->vp);
err_viommu:
	virtio_iommu_destroy(&v->viommu);
err_free:
	free(v);
	log_err("iommu0", "cannot create virtio-iommu: %s", strerror_safe(-r));
	return r;
}

uint16_t viommu_vm_bdf(const struct pci_device *pci)
{
	/* One root bus, function 0 only (devices/pci.h). */
	return viot_bdf(0, pci->slot, 0);
}

int viommu_vm_add_endpoint(struct viommu_vm *v, struct virtio_device *vdev,
			   const struct pci_device *pci)
{
	if (!pci->attached)
		return -EINVAL;
	return virtio_iommu_add_endpoint(&v->viommu, vdev, viommu_vm_bdf(pci));
}

int viommu_vm_viot(struct viommu_vm *v, uint8_t **blob, size_t *len)
{
	struct viot_config cfg = { .iommu_segment = 0, .iommu_bdf = viommu_vm_bdf(&v->vp.pci) };

	if (!v->viommu.nr_clients)
		return -ENOENT;
	for (unsigned i = 0; i < v->viommu.nr_clients; i++)
		cfg.endpoint_bdf[cfg.nr_endpoints++] = v->viommu.clients[i].bdf;
	return viot_build(&cfg, blob, len);
}

struct viommu_vm *viommu_vm_find(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (d->ops == &viommu_vm_ops)
			return to_vv(d);
	return NULL;
}

int viommu_vm_setup(struct vm *vm, char *err, size_t errlen)
{
	struct viommu_vm *v;
	int r;

	if (!vm->cfg.iommu)
		return 0;
	r = viommu_vm_create(vm, vm->pci, &v);
	if (r)
		snprintf(err, errlen, "iommu: cannot create the virtio-iommu device: %s",
			 strerror_safe(-r));
	return r;
}

int viommu_vm_attach_endpoints(struct vm *vm, char *err, size_t errlen)
{
	struct viommu_vm *v = viommu_vm_find(vm);
	int r;

	for (struct device *d = vm->devices; d; d = d->next) {
		struct virtio_net *net;

		if (strcmp(d->ops->type, "virtio-net"))
			continue;
		net = container_of(d, struct virtio_net, dev);
		if (!net->cfg.iommu)
			continue;
		if (!v) {
			snprintf(err, errlen, "%s: iommu=on needs the virtio-iommu device (--iommu)",
				 d->name);
			return -EINVAL;
		}
		r = viommu_vm_add_endpoint(v, &net->vdev, &net->vp.pci);
		if (r) {
			snprintf(err, errlen, "%s: cannot put it behind the IOMMU: %s", d->name,
				 strerror_safe(-r));
			return r;
		}
	}
	return 0;
}

void viommu_vm_describe_acpi(struct vm *vm, struct acpi_config *acpi)
{
	struct viommu_vm *v = viommu_vm_find(vm);

	if (!v)
		return;
	if (!v->viot && viommu_vm_viot(v, &v->viot, &v->viot_len))
		return;                          /* no endpoint: no VIOT */
	if (acpi_config_add_table(acpi, v->viot, v->viot_len))
		log_warn("iommu0", "no room for the VIOT among the %u extra ACPI tables; the guest "
			 "will not find the IOMMU", acpi->nr_extra);
}
