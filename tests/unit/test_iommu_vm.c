/* virtio-iommu as a VM device on a real PCI root bus (interrupt plumbing
 * mocked): PCI identity, endpoint IDs = requester IDs, VIOT naming them, the
 * device ops (info, save/load, reset, destroy). No KVM needed. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "devices/virtio_iommu_vm.h"
#include "devices/viot.h"
#include "migration/state.h"
#include "vmm/layout.h"
#include "vmm/vm.h"

static int m_route_add(void *o, uint64_t a, uint32_t d, unsigned *gsi) { *gsi = 24; return 0; }
static int m_route_update(void *o, unsigned g, uint64_t a, uint32_t d) { return 0; }
static int m_irqfd(void *o, int fd, unsigned g, bool assign) { return 0; }
static int m_ioeventfd(void *o, int fd, uint64_t a, uint32_t l, bool pio, bool assign) { return 0; }
static const struct pci_irq_ops mock_irq = {
	.msi_route_add = m_route_add, .msi_route_update = m_route_update,
	.irqfd = m_irqfd, .ioeventfd = m_ioeventfd,
};

static struct vm *vm;
static struct pci_bus pbus;
static struct virtio_device net;
static struct virtio_pci net_pci;

static void setup(void)
{
	vm = calloc(1, sizeof(*vm));
	cr_assert_not_null(vm);
	cr_assert_eq(mem_init(&vm->mem, 4u << 20), 0);
	cr_assert_eq(evl_init(&vm->loop), 0);
	cr_assert_eq(bus_init(&vm->mmio, "mmio"), 0);
	cr_assert_eq(bus_init(&vm->pio, "pio"), 0);
	cr_assert_eq(pci_bus_init(&pbus, &vm->mmio, &vm->pio, LAYOUT_PCI_ECAM, &mock_irq, NULL), 0);
	cr_assert_eq(virtio_device_init(&net, "net0", &vm->mem, 1, 2, 64, NULL, NULL), 0);
}

static void teardown(void)
{
	struct device *d = vm->devices, *next;

	for (; d; d = next) {
		next = d->next;
		d->ops->destroy(d);
	}
	virtio_pci_destroy(&net_pci);
	virtio_device_destroy(&net);
	pci_bus_destroy(&pbus);
	bus_destroy(&vm->mmio);
	bus_destroy(&vm->pio);
	evl_destroy(&vm->loop);
	mem_destroy(&vm->mem);
	free(vm);
}

TestSuite(iommu_vm, .init = setup, .fini = teardown);

Test(iommu_vm, pci_identity_endpoints_and_viot)
{
	struct viommu_vm *v;
	uint8_t *viot;
	size_t len;
	uint32_t id;
	uint16_t iommu_bdf, net_bdf;

	cr_assert_eq(viommu_vm_create(vm, &pbus, &v), 0);
	cr_assert_eq(vm->devices, &v->dev);
	cr_assert_str_eq(v->dev.ops->type, "virtio-iommu");
	/* virtio 1.2 §4.1.2.1: vendor 0x1af4, device 0x1040 + 23. */
	id = pci_bus_config_read(&pbus, v->vp.pci.slot, 0, 0, 4);
	cr_assert_eq(id, 0x1af4u | (0x1057u << 16));
	cr_assert_eq(pci_bus_config_read(&pbus, v->vp.pci.slot, 0, 8, 4) >> 8, VIOMMU_PCI_CLASS);
	cr_assert_eq(viommu_vm_viot(v, &viot, &len), -ENOENT, "no endpoint, no VIOT");

	cr_assert_eq(virtio_pci_init(&net_pci, &net, &pbus, 0x1041, 0x020000), 0);
	cr_assert_eq(viommu_vm_add_endpoint(v, &net, &net_pci.pci), 0);
	cr_assert(net.host_features & (1ULL << VIRTIO_F_ACCESS_PLATFORM));
	net_bdf = viommu_vm_bdf(&net_pci.pci);
	iommu_bdf = viommu_vm_bdf(&v->vp.pci);
	cr_assert_neq(net_bdf, iommu_bdf);
	cr_assert_not_null(iommu_endpoint_find(&v->viommu.io, net_bdf));

	cr_assert_eq(viommu_vm_viot(v, &viot, &len), 0);
	cr_assert_eq(len, 48 + 16 + 24);
	cr_assert_eq(viot[48], VIOT_NODE_VIRTIO_PCI);
	cr_assert_eq(viot[48 + 6] | viot[48 + 7] << 8, iommu_bdf);
	cr_assert_eq(viot[64], VIOT_NODE_PCI_RANGE);
	cr_assert_eq(viot[64 + 12] | viot[64 + 13] << 8, net_bdf);
	cr_assert_eq(viot[64 + 14] | viot[64 + 15] << 8, net_bdf);
	free(viot);
}

/* The VIOT is appended to the extra tables already there, not put in
 * their place (nor dropped). */
Test(iommu_vm, viot_appended_to_existing_extra_tables)
{
	uint8_t oem[ACPI_HEADER_SIZE] = "OEMX";
	struct acpi_config acpi = { .nr_cpus = 1 };
	struct viommu_vm *v;

	cr_assert_eq(viommu_vm_create(vm, &pbus, &v), 0);
	cr_assert_eq(virtio_pci_init(&net_pci, &net, &pbus, 0x1041, 0x020000), 0);
	cr_assert_eq(viommu_vm_add_endpoint(v, &net, &net_pci.pci), 0);
	cr_assert_eq(acpi_config_add_table(&acpi, oem, sizeof(oem)), 0);
	viommu_vm_describe_acpi(vm, &acpi);
	cr_assert_eq(acpi.nr_extra, 2);
	cr_assert_eq(acpi.extra[0].data, oem, "the table that was there stays first");
	cr_assert_eq(memcmp(acpi.extra[1].data, "VIOT", 4), 0);
	cr_assert_eq(acpi.extra[1].len, 48 + 16 + 24);
	/* Full list: the VIOT cannot be added, the others stay. */
	acpi.nr_extra = 0;
	for (unsigned i = 0; i < ACPI_MAX_EXTRA_TABLES; i++)
		cr_assert_eq(acpi_config_add_table(&acpi, oem, sizeof(oem)), 0);
	viommu_vm_describe_acpi(vm, &acpi);
	cr_assert_eq(acpi.nr_extra, ACPI_MAX_EXTRA_TABLES);
	for (unsigned i = 0; i < ACPI_MAX_EXTRA_TABLES; i++)
		cr_assert_eq(acpi.extra[i].data, oem);
}

Test(iommu_vm, info_save_load_reset)
{
	struct viommu_vm *v;
	cJSON *obj = cJSON_CreateObject(), *eps, *doms;
	struct state_tree *t = state_tree_new(), *rt;
	struct state_node *n, root, dn;
	char err[256];
	uint16_t bdf;
	void *blob;
	size_t len;

	cr_assert_eq(viommu_vm_create(vm, &pbus, &v), 0);
	cr_assert_eq(virtio_pci_init(&net_pci, &net, &pbus, 0x1041, 0x020000), 0);
	cr_assert_eq(viommu_vm_add_endpoint(v, &net, &net_pci.pci), 0);
	bdf = viommu_vm_bdf(&net_pci.pci);
	cr_assert_eq(iommu_attach(&v->viommu.io, 3, bdf, 0), 0);
	cr_assert_eq(iommu_map(&v->viommu.io, 3, 0x100000, 0x1fffff, 0x100000, 3), 0);

	v->dev.ops->info(&v->dev, obj);
	cr_assert_eq(cJSON_GetObjectItem(obj, "mappings")->valuedouble, 1);
	doms = cJSON_GetObjectItem(obj, "domains");
	cr_assert_eq(cJSON_GetArraySize(doms), 1);
	cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(doms, 0), "id")->valuedouble, 3);
	cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(doms, 0), "mappings")->valuedouble, 1);
	eps = cJSON_GetObjectItem(obj, "endpoints");
	cr_assert_eq(cJSON_GetArraySize(eps), 1);
	cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(eps, 0), "id")->valuedouble, bdf);
	cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(eps, 0), "domain")->valuedouble, 3);
	cJSON_Delete(obj);
	obj = cJSON_CreateObject();
	v->dev.ops->counters(&v->dev, obj);
	cr_assert_eq(cJSON_GetObjectItem(obj, "map_ops")->valuedouble, 1);
	cr_assert_not_null(cJSON_GetObjectItem(obj, "translation_cache_hits"));
	cr_assert_not_null(cJSON_GetObjectItem(obj, "fault_events_dropped"));
	cJSON_Delete(obj);

	n = state_add_node(state_tree_root(t), "iommu0", 1);
	cr_assert_eq(v->dev.ops->save(&v->dev, n), 0);
	cr_assert_eq(state_tree_finish(t, &blob, &len), 0, "%s", state_error(t));
	state_tree_free(t);
	v->dev.ops->reset(&v->dev);
	cr_assert_eq(iommu_nr_domains(&v->viommu.io), 0, "reset detaches everything");
	cr_assert_eq(state_tree_open(&rt, blob, len, err, sizeof(err)), 0, "%s", err);
	free(blob);
	cr_assert_eq(state_root(rt, &root), 0);
	cr_assert_eq(state_child(&root, "iommu0", &dn), 0);
	cr_assert_eq(v->dev.ops->load(&v->dev, &dn), 0, "%s", state_error(rt));
	state_tree_free(rt);
	cr_assert_eq(iommu_nr_mappings(&v->viommu.io), 1);
}

/* A second VM-like fixture for restore targets. */
struct target {
	struct vm *vm;
	struct pci_bus bus;
};

static void target_init(struct target *t)
{
	t->vm = calloc(1, sizeof(*t->vm));
	cr_assert_not_null(t->vm);
	cr_assert_eq(mem_init(&t->vm->mem, 4u << 20), 0);
	cr_assert_eq(evl_init(&t->vm->loop), 0);
	cr_assert_eq(bus_init(&t->vm->mmio, "mmio"), 0);
	cr_assert_eq(bus_init(&t->vm->pio, "pio"), 0);
	cr_assert_eq(pci_bus_init(&t->bus, &t->vm->mmio, &t->vm->pio, LAYOUT_PCI_ECAM, &mock_irq, NULL), 0);
}

static void target_fini(struct target *t)
{
	for (struct device *d = t->vm->devices, *next; d; d = next) {
		next = d->next;
		d->ops->destroy(d);
	}
	pci_bus_destroy(&t->bus);
	bus_destroy(&t->vm->mmio);
	bus_destroy(&t->vm->pio);
	evl_destroy(&t->vm->loop);
	mem_destroy(&t->vm->mem);
	free(t->vm);
}

/* Bring the IOMMU's transport into a driver-initialized state. */
static void drive(struct viommu_vm *v)
{
	struct pci_device *d = &v->vp.pci;
	struct virtio_device *vd = &v->viommu.vdev;
	struct virtqueue *q = &vd->vqs[0];
	uint32_t lo = 0xfee00000, data = 0x4041;
	uint64_t f = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_IOMMU_F_MAP_UNMAP);

	pci_bus_config_write(&pbus, d->slot, 0, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	pci_bus_config_write(&pbus, d->slot, 0, d->msix.cap_off + 2, 0x8000, 2);   /* MSI-X enable */
	pci_msix_mmio_write(d, d->msix.bar, d->msix.table_off + 16, &lo, 4);       /* vector 1 */
	pci_msix_mmio_write(d, d->msix.bar, d->msix.table_off + 24, &data, 4);
	pthread_mutex_lock(&vd->lock);
	virtio_device_set_status(vd, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_device_set_guest_features(vd, 0, (uint32_t)f);
	virtio_device_set_guest_features(vd, 1, (uint32_t)(f >> 32));
	virtio_device_set_status(vd, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				     VIRTIO_CONFIG_S_FEATURES_OK);
	q->st.size = 16;
	q->st.desc_addr = 0x10000;
	q->st.avail_addr = 0x11000;
	q->st.used_addr = 0x12000;
	q->st.msix_vector = 1;
	cr_assert_eq(virtq_enable(q), 0);
	q->st.last_avail_idx = 7;
	q->st.used_idx = 7;
	virtio_device_set_status(vd, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&vd->lock);
}

static struct state_tree *save_reopen(struct viommu_vm *v, struct state_node *out)
{
	struct state_tree *t = state_tree_new(), *rt;
	struct state_node *n, root;
	char err[256];
	void *blob;
	size_t len;

	n = state_add_node(state_tree_root(t), "iommu0", 1);
	cr_assert_eq(v->dev.ops->save(&v->dev, n), 0, "%s", state_error(t));
	cr_assert_eq(state_tree_finish(t, &blob, &len), 0, "%s", state_error(t));
	state_tree_free(t);
	cr_assert_eq(state_tree_open(&rt, blob, len, err, sizeof(err)), 0, "%s", err);
	free(blob);
	cr_assert_eq(state_root(rt, &root), 0);
	cr_assert_eq(state_child(&root, "iommu0", out), 0);
	return rt;
}

Test(iommu_vm, transport_state_round_trip)
{
	struct viommu_vm *v, *w;
	struct target tgt;
	struct state_node n;
	struct state_tree *t;

	cr_assert_eq(viommu_vm_create(vm, &pbus, &v), 0);
	drive(v);
	t = save_reopen(v, &n);
	target_init(&tgt);
	cr_assert_eq(viommu_vm_create(tgt.vm, &tgt.bus, &w), 0);
	cr_assert_eq(w->dev.ops->load(&w->dev, &n), 0, "%s", state_error(t));
	state_tree_free(t);

	struct virtio_device *a = &v->viommu.vdev, *b = &w->viommu.vdev;
	cr_assert_eq(b->st.status, a->st.status);
	cr_assert(b->st.status & VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert_eq(b->st.guest_features, a->st.guest_features);
	cr_assert(b->vqs[0].st.enabled);
	cr_assert_not_null(b->vqs[0].desc, "rings mapped again");
	cr_assert_eq(b->vqs[0].st.size, 16);
	cr_assert_eq(b->vqs[0].st.desc_addr, 0x10000);
	cr_assert_eq(b->vqs[0].st.last_avail_idx, 7);
	cr_assert_eq(b->vqs[0].st.used_idx, 7);
	cr_assert_eq(b->vqs[0].st.msix_vector, 1);
	cr_assert_not(b->vqs[1].st.enabled);
	cr_assert_eq(pci_cfg_get16(&w->vp.pci, PCI_COMMAND) & 0x6, 0x6);
	cr_assert(w->vp.pci.msix.enabled);
	cr_assert_eq(w->vp.pci.msix.vec[1].addr_lo, 0xfee00000);
	cr_assert_eq(w->vp.pci.msix.vec[1].data, 0x4041);
	cr_assert_eq(pci_bar_address(&w->vp.pci, VIRTIO_PCI_BAR), pci_bar_address(&v->vp.pci, VIRTIO_PCI_BAR));
	target_fini(&tgt);
}

Test(iommu_vm, transport_state_hostile_queue_rejected_before_applying)
{
	struct viommu_vm *v, *w;
	struct target tgt;
	struct state_node n;
	struct state_tree *t;

	cr_assert_eq(viommu_vm_create(vm, &pbus, &v), 0);
	drive(v);
	v->viommu.vdev.vqs[0].st.size = 12;          /* not a power of two */
	t = save_reopen(v, &n);
	target_init(&tgt);
	cr_assert_eq(viommu_vm_create(tgt.vm, &tgt.bus, &w), 0);
	cr_assert_neq(w->dev.ops->load(&w->dev, &n), 0);
	cr_assert(strstr(state_error(t), "queue@0"), "%s", state_error(t));
	cr_assert_eq(w->viommu.vdev.st.status, 0, "nothing applied");
	cr_assert_eq(pci_cfg_get16(&w->vp.pci, PCI_COMMAND) & 0x6, 0);
	state_tree_free(t);
	target_fini(&tgt);
}
