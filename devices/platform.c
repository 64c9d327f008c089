/* Small platform devices that end or reset the VM: the i8042 controller's
 * reset line, the debug-exit port, and the ACPI hardware-reduced sleep/reset
 * registers the FADT points at (see vmm/layout.h for the ports). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/legacy.h"
#include "migration/state.h"
#include "vmm/layout.h"
#include "vmm/vm.h"

#define I8042_CMD_RESET 0xfe     /* pulse output line 0 = CPU reset */
#define ACPI_SLP_EN     0x20     /* ACPI 6.4 §4.8.3.7: SLEEP_CONTROL_REG bit 5 */
#define ACPI_SLP_TYP(v) (((v) >> 2) & 7)

struct simple_dev {
	struct device dev;
};

static void simple_destroy(struct device *dev)
{
	free(dev);
}

/* Stateless: the node only records that the device exists (and its version). */
static int simple_save(struct device *dev, struct state_node *node)
{
	return state_set_version(node, 1);
}

static int simple_load(struct device *dev, const struct state_node *node)
{
	return state_node_version(node, 1, 1, NULL);
}

/* Create a stateless device owning the port range [port, port+len). */
static int simple_create(struct vm *vm, const struct device_ops *ops, const char *name,
			 uint64_t port, uint64_t len, const struct bus_ops *bus_ops,
			 struct simple_dev **out)
{
	struct simple_dev *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	vm_add_device(vm, &d->dev, ops, name);
	if (out)
		*out = d;
	return bus_register(&vm->pio, port, len, bus_ops, d, name);
}

/* i8042: port 0x64 reads as "no data, input buffer empty"; command 0xfe resets. */
static void i8042_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	memset(data, 0, len);
}

static void i8042_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct simple_dev *d = opaque;

	if (off == PORT_I8042_CMD - PORT_I8042_DATA && *(const uint8_t *)data == I8042_CMD_RESET)
		vm_request_exit(d->dev.vm, 0, "guest requested reset (i8042)");
}

static const struct bus_ops i8042_bus_ops = { .read = i8042_read, .write = i8042_write };
static const struct device_ops i8042_ops = { .type = "i8042", .destroy = simple_destroy,
						     .save = simple_save, .load = simple_load };

int i8042_create(struct vm *vm)
{
	/* One range 0x60-0x64 so offsets are relative to the data port; 0x61
	 * (PC speaker / PIT gate) inside it is handled by KVM's in-kernel PIT and
	 * never reaches us. */
	return simple_create(vm, &i8042_ops, "i8042", PORT_I8042_DATA,
			     PORT_I8042_CMD - PORT_I8042_DATA + 1, &i8042_bus_ops, NULL);
}

/* Debug exit: the value written is the VMM's exit status (low 8 bits). QEMU's
 * isa-debug-exit at the same port exits with (value << 1) | 1. */
static void debug_exit_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct simple_dev *d = opaque;
	uint32_t v = 0;

	memcpy(&v, data, len < sizeof(v) ? len : sizeof(v));
	vm_request_exit(d->dev.vm, (int)(v & 0xff), "guest wrote %u to the debug-exit port", v);
}

static const struct bus_ops debug_exit_bus_ops = { .read = i8042_read, .write = debug_exit_write };
static const struct device_ops debug_exit_ops = { .type = "debug-exit", .destroy = simple_destroy,
						     .save = simple_save, .load = simple_load };

int debug_exit_create(struct vm *vm)
{
	return simple_create(vm, &debug_exit_ops, "debug-exit", PORT_DEBUG_EXIT, 4, &debug_exit_bus_ops,
			     NULL);
}

/* ACPI sleep control (S5 = power off), sleep status (always "woken"), reset. */
static void acpi_pm_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	memset(data, 0, len);
	if (off == PORT_ACPI_SLEEP_STS - PORT_ACPI_PM_BASE)
		*(uint8_t *)data = 0x80; /* WAK_STS */
}

static void acpi_pm_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct simple_dev *d = opaque;
	uint8_t v = *(const uint8_t *)data;

	if (off == PORT_ACPI_SLEEP_CTL - PORT_ACPI_PM_BASE && (v & ACPI_SLP_EN) &&
	    ACPI_SLP_TYP(v) == ACPI_S5_TYPE)
		vm_request_exit(d->dev.vm, 0, "guest powered off (ACPI S5)");
	else if (off == PORT_ACPI_RESET - PORT_ACPI_PM_BASE && v == ACPI_RESET_VALUE)
		vm_request_exit(d->dev.vm, 0, "guest requested reset (ACPI)");
}

static const struct bus_ops acpi_pm_bus_ops = { .read = acpi_pm_read, .write = acpi_pm_write };
static const struct device_ops acpi_pm_ops = { .type = "acpi-pm", .destroy = simple_destroy,
						     .save = simple_save, .load = simple_load };

int acpi_pm_create(struct vm *vm)
{
	return simple_create(vm, &acpi_pm_ops, "acpi-pm", PORT_ACPI_PM_BASE, 3, &acpi_pm_bus_ops, NULL);
}
