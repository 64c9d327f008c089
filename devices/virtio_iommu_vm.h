/* virtio-iommu bound to a struct vm: PCI function on the root bus, queue
 * kicks and fault wake-ups on the VM's event loop, device ops (reset,
 * destroy, save/load, info), and the ACPI VIOT table describing it.
 *
 * How vm_devices.c uses it (with --iommu):
 *   struct viommu_vm *iommu;
 *   viommu_vm_create(vm, pci_bus, &iommu);               // before the devices behind it
 *   ... create virtio-net; if its config says iommu=on:
 *   viommu_vm_add_endpoint(iommu, &net->vdev, &net->vp.pci);   // after it is on the bus
 *   ... when building ACPI: viommu_vm_viot(iommu, &blob, &len) -> an extra table.
 */
#ifndef DEVICES_VIRTIO_IOMMU_VM_H
#define DEVICES_VIRTIO_IOMMU_VM_H

#include <stddef.h>
#include <stdint.h>

#include "devices/pci.h"
#include "devices/virtio_iommu.h"
#include "devices/virtio_pci.h"
#include "vmm/acpi.h"
#include "vmm/device.h"

struct vm;

/* PCI class: base system peripheral, other (like QEMU's virtio-iommu-pci). */
#define VIOMMU_PCI_CLASS 0x088000

struct viommu_vm {
	struct device dev;             /* in vm->devices; name "iommu0" */
	struct virtio_iommu viommu;
	struct virtio_pci vp;
	struct vm *vm;
	bool on_loop;                  /* fds registered on vm->loop */
	uint8_t *viot;                 /* built for ACPI, owned */
	size_t viot_len;
};

/* The three calls vm_devices.c makes (no-ops without --iommu):
 *   viommu_vm_setup()             before the devices that go behind it;
 *   viommu_vm_attach_endpoints()  after them: every virtio-net with iommu=on;
 *   viommu_vm_describe_acpi()     adds the VIOT as an extra ACPI table. */
int viommu_vm_setup(struct vm *vm, char *err, size_t errlen);
int viommu_vm_attach_endpoints(struct vm *vm, char *err, size_t errlen);
void viommu_vm_describe_acpi(struct vm *vm, struct acpi_config *acpi);
/* The VM's virtio-iommu, or NULL. */
struct viommu_vm *viommu_vm_find(struct vm *vm);

int viommu_vm_create(struct vm *vm, struct pci_bus *bus, struct viommu_vm **out);
/* Put @vdev, whose PCI function is @pci (already on the bus), behind the IOMMU.
 * Its endpoint ID is its requester ID (bus 0, slot, function 0). */
int viommu_vm_add_endpoint(struct viommu_vm *v, struct virtio_device *vdev,
			   const struct pci_device *pci);
uint16_t viommu_vm_bdf(const struct pci_device *pci);
/* ACPI VIOT for the IOMMU and its endpoints (malloc'd; caller frees).
 * -ENOENT if no endpoint is behind it (no table is needed then). */
int viommu_vm_viot(struct viommu_vm *v, uint8_t **blob, size_t *len);

#endif
