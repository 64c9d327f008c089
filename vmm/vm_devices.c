/* Which devices a VM gets, from its configuration. Each subsystem adds its
 * devices here; the order is the order of the device list (and of reset). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "devices/legacy.h"
#include "devices/pci_vm.h"
#include "devices/virtio_iommu_vm.h"
#include "devices/virtio_net.h"
#include "vfio/vfio_pci.h"
#include "vmm/acpi.h"
#include "vmm/layout.h"
#include "vmm/log.h"
#include "vmm/vm_internal.h"

static int vm_create_console(struct vm *vm, char *err, size_t errlen)
{
	int out_fd = -1, in_fd = -1;
	bool owns = false;

	switch (vm->cfg.console) {
	case CONSOLE_STDIO:
		out_fd = STDOUT_FILENO;
		in_fd = STDIN_FILENO;
		break;
	case CONSOLE_FILE:
		out_fd = open(vm->cfg.console_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out_fd < 0) {
			int ret = -errno;

			snprintf(err, errlen, "console: cannot open '%s': %s", vm->cfg.console_path,
				 strerror_safe(errno));
			return ret;
		}
		owns = true;
		break;
	case CONSOLE_NONE:
		break;
	}
	return uart_create(vm, PORT_COM1, IRQ_COM1, out_fd, owns, in_fd, NULL);
}

/* The PCI root bus (always: guests enumerate it even when empty) and the
 * devices on it. The bus joins the device list last, so it outlives them. */
static int vm_create_pci_devices(struct vm *vm, char *err, size_t errlen)
{
	int ret = pci_vm_create(vm);

	if (ret) {
		snprintf(err, errlen, "creating the PCI bus failed: %s", strerror_safe(-ret));
		return ret;
	}
	ret = viommu_vm_setup(vm, err, errlen);
	for (unsigned i = 0; i < vm->cfg.nr_nets && !ret; i++)
		ret = virtio_net_create(vm, &vm->cfg.nets[i], i, err, errlen);
	for (unsigned i = 0; i < vm->cfg.nr_devices && !ret; i++)
		ret = vfio_pci_create(vm, &vm->cfg.devices[i], i, err, errlen);
	if (!ret)
		ret = viommu_vm_attach_endpoints(vm, err, errlen);
	pci_vm_attach(vm);
	return ret;
}

int vm_create_devices(struct vm *vm, char *err, size_t errlen)
{
	int ret;

	ret = vm_create_console(vm, err, errlen);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "console: %s", strerror_safe(-ret));
		return ret;
	}
	ret = i8042_create(vm);
	if (!ret)
		ret = debug_exit_create(vm);
	if (!ret)
		ret = acpi_pm_create(vm);
	if (ret) {
		snprintf(err, errlen, "creating platform devices failed: %s", strerror_safe(-ret));
		return ret;
	}
	return vm_create_pci_devices(vm, err, errlen);
}

void vm_describe_acpi(struct vm *vm, struct acpi_config *acpi)
{
	acpi->nr_cpus = vm->nr_vcpus;
	pci_vm_acpi_config(vm->pci, acpi);
	viommu_vm_describe_acpi(vm, acpi);
}
