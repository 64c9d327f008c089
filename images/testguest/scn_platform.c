/* Platform scenarios: what the VMM presents besides devices.
 *   cpuid      hypervisor bit, KVM signature leaf, the BSP's APIC id in leaf 1
 *   reset      i8042 reset command (0xfe to port 0x64): the VMM must end the run, status 0
 *   poweroff   ACPI S5 through the FADT's sleep control register and the DSDT's \_S5_
 *   echo-input read a line from COM1 (polled) and print its length and a checksum,
 *              so a test can push more than the 64-byte RX FIFO through host stdin */
#include "acpi.h"
#include "guest.h"

#define UART_RBR 0
#define UART_LSR 5
#define UART_LSR_DR 0x01
#define I8042_CMD 0x64
#define I8042_RESET 0xfe
#define ACPI_SLP_EN 0x20
#define FADT_SLEEP_CONTROL_REG 244   /* ACPI 6.4 §5.2.9, Table 5.9: GAS at byte 244 */
#define FADT_X_DSDT 140             /* ACPI 6.4 Table 5.9 */
#define GAS_SPACE_IO 1
#define AML_PACKAGE_OP 0x12
#define AML_BYTE_PREFIX 0x0a
#define AML_ZERO_OP 0x00
#define AML_ONE_OP 0x01
#define WAIT_FOR_EXIT_US 2000000

static void scn_cpuid(void)
{
	u32 a, b, c, d;
	char sig[13];

	cpuid(1, 0, &a, &b, &c, &d);
	if (!(c & (1u << 31)))
		fail("CPUID.1:ECX.hypervisor is clear");
	if (b >> 24 != 0)
		fail("CPUID.1:EBX initial APIC id of the BSP is %u, expected 0", b >> 24);
	cpuid(0x40000000, 0, &a, &b, &c, &d);
	memcpy(sig, &b, 4);
	memcpy(sig + 4, &c, 4);
	memcpy(sig + 8, &d, 4);
	sig[12] = 0;
	if (memcmp(sig, "KVMKVMKVM\0\0\0", 12))
		fail("hypervisor signature '%s', expected KVMKVMKVM", sig);
	if (a < 0x40000001)
		fail("max hypervisor leaf 0x%x, expected >= 0x40000001", a);
	guest_printf("cpuid: hypervisor '%s', max leaf 0x%x\n", sig, a);
}
SCENARIO("cpuid", scn_cpuid);

/* The write below must end the VM; if it returns, the VMM ignored it. */
static void wait_for_exit(const char *what)
{
	u64 start = time_us();

	while (time_us() - start < WAIT_FOR_EXIT_US)
		cpu_relax();
	fail("still running %u ms after %s", WAIT_FOR_EXIT_US / 1000, what);
}

static void scn_reset(void)
{
	guest_printf("reset: pulsing the i8042 reset line\n");
	outb(I8042_CMD, I8042_RESET);
	wait_for_exit("the i8042 reset command");
}
SCENARIO("reset", scn_reset);

/* SLP_TYPa of \_S5_: "_S5_" PackageOp PkgLength NumElements then the value. */
static int dsdt_s5_type(const struct acpi_header *dsdt)
{
	const u8 *p = (const u8 *)dsdt;

	for (u32 i = sizeof(*dsdt); i + 8 < dsdt->length; i++) {
		if (memcmp(p + i, "_S5_", 4) || p[i + 4] != AML_PACKAGE_OP)
			continue;
		u32 j = i + 5;
		j += 1 + (p[j] >> 6);   /* PkgLength: lead byte + follow bytes */
		j += 1;                 /* NumElements */
		if (j + 1 >= dsdt->length)
			return -1;
		if (p[j] == AML_BYTE_PREFIX)
			return p[j + 1];
		if (p[j] == AML_ZERO_OP || p[j] == AML_ONE_OP)
			return p[j];
		return -1;
	}
	return -1;
}

static void scn_poweroff(void)
{
	const struct acpi_header *fadt = acpi_find_table("FACP", false);
	const struct acpi_header *dsdt;
	const u8 *gas;
	u64 port, dsdt_addr;
	int typ;

	if (!fadt || fadt->length < FADT_SLEEP_CONTROL_REG + 12)
		fail("no FADT with a sleep control register");
	/* The DSDT hangs off the FADT (X_DSDT), not the XSDT. */
	memcpy(&dsdt_addr, (const u8 *)fadt + FADT_X_DSDT, 8);
	if (!dsdt_addr || dsdt_addr >= ram_top())
		fail("FADT X_DSDT 0x%lx is not in RAM", (unsigned long)dsdt_addr);
	dsdt = (const struct acpi_header *)dsdt_addr;
	if (memcmp(dsdt->signature, "DSDT", 4))
		fail("X_DSDT does not point at a DSDT");
	gas = (const u8 *)fadt + FADT_SLEEP_CONTROL_REG;
	memcpy(&port, gas + 4, 8);
	if (gas[0] != GAS_SPACE_IO || !port || port > 0xffff)
		fail("sleep control register is not an I/O port (space %u, address 0x%lx)", gas[0],
		     (unsigned long)port);
	typ = dsdt_s5_type(dsdt);
	if (typ < 0)
		fail("no \\_S5_ package in the DSDT");
	guest_printf("poweroff: SLP_TYP %d to port 0x%lx\n", typ, (unsigned long)port);
	outb((u16)port, (u8)((typ & 7) << 2 | ACPI_SLP_EN));
	wait_for_exit("ACPI S5");
}
SCENARIO("poweroff", scn_poweroff);

static u8 serial_getc(void)
{
	while (!(inb(GUEST_PORT_COM1 + UART_LSR) & UART_LSR_DR))
		cpu_relax();
	return inb(GUEST_PORT_COM1 + UART_RBR);
}

static void scn_echo_input(void)
{
	u64 len = 0;
	u32 sum = 0;
	char head[33];

	guest_printf("echo-input: ready\n");
	for (;;) {
		u8 ch = serial_getc();

		if (ch == '\n' || ch == '\r')
			break;
		if (len < sizeof(head) - 1)
			head[len] = (char)ch;
		sum = sum * 31 + ch;
		len++;
	}
	head[len < sizeof(head) - 1 ? len : sizeof(head) - 1] = 0;
	guest_printf("echo-input: len=%lu sum=%u head=%s\n", (unsigned long)len, sum, head);
}
SCENARIO("echo-input", scn_echo_input);
