/* Runtime core: entry from start.S, console, printf, command line, exit. */
#include "guest.h"
#include "idt.h"
#include "smp.h"

/* 16550 registers (offsets from COM1). */
#define UART_THR 0
#define UART_FCR 2
#define UART_IIR 2
#define UART_LSR 5
#define UART_LSR_THRE 0x20
#define UART_FCR_ENABLE_CLEAR 0x07
#define UART_IIR_FIFO_MASK 0xc0

#define CMDLINE_MAX 1024
#define MAX_PARAMS 32

extern const struct scenario __scenarios_start[], __scenarios_end[];

struct param {
	const char *key;
	const char *value;
};

#define MEMMAP_MAX 64

/* Boot-time facts, written once by the BSP before anything else runs. They
 * are copies: the VMM's boot area in low RAM is free for the guest to reuse
 * (the AP trampoline goes there). */
static const struct hvm_start_info *boot_info;
static struct hvm_start_info boot_info_copy;
static struct hvm_memmap_entry memmap_copy[MEMMAP_MAX];
static u32 memmap_count;
static char cmdline_orig[CMDLINE_MAX];
static char cmdline_split[CMDLINE_MAX];
static struct param params[MAX_PARAMS];
static unsigned nr_params;
static const char *current_name = "hello";
static unsigned uart_burst = 1;     /* bytes we may write per THRE (16 with FIFO) */
static struct spinlock console_lock;

/* ---------------------------------------------------------------- console */

static void serial_init(void)
{
	/* Enable and clear the FIFOs; if IIR then reports them enabled (bits 7:6
	 * = 11, 16550A), one empty-THR check lets us write 16 bytes (PC16550D
	 * datasheet: THRE = transmit FIFO empty). Two exits, saves one per byte. */
	outb(GUEST_PORT_COM1 + UART_FCR, UART_FCR_ENABLE_CLEAR);
	if ((inb(GUEST_PORT_COM1 + UART_IIR) & UART_IIR_FIFO_MASK) == UART_IIR_FIFO_MASK)
		uart_burst = 16;
}

void serial_write(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		while (!(inb(GUEST_PORT_COM1 + UART_LSR) & UART_LSR_THRE))
			cpu_relax();
		size_t n = len - i < uart_burst ? len - i : uart_burst;
		const char *p = s + i;

		/* One string instruction per burst: a VMM sees a single port-I/O
		 * exit carrying n bytes instead of n exits. */
		__asm__ volatile("rep outsb" : "+S"(p), "+c"(n) : "d"((u16)(GUEST_PORT_COM1 + UART_THR))
				 : "memory");
		i = (size_t)(p - s);
	}
}

void spin_lock(struct spinlock *l)
{
	while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
		while (l->locked)
			cpu_relax();
}

void spin_unlock(struct spinlock *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}

static int console_vprintf(const char *fmt, va_list ap)
{
	char buf[256];
	int n = guest_vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t len = n < 0 ? 0 : (size_t)n;

	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	spin_lock(&console_lock);
	serial_write(buf, len);
	spin_unlock(&console_lock);
	return n;
}

int guest_printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = console_vprintf(fmt, ap);
	va_end(ap);
	return n;
}

/* ---------------------------------------------------------------- exit */

void guest_exit(u32 status)
{
	/* debug-exit: our vmm exits with @status; QEMU's isa-debug-exit with
	 * (status << 1) | 1. */
	outl(GUEST_PORT_DEBUG_EXIT, status);
	for (;;)
		__asm__ volatile("cli; hlt");
}

const char *scenario_name(void)
{
	return current_name;
}

void pass(void)
{
	guest_printf("PASS %s\n", current_name);
	guest_exit(0);
}

void pass_with(const char *fmt, ...)
{
	char extra[160];
	va_list ap;

	va_start(ap, fmt);
	guest_vsnprintf(extra, sizeof(extra), fmt, ap);
	va_end(ap);
	guest_printf("PASS %s %s\n", current_name, extra);
	guest_exit(0);
}

void fail(const char *fmt, ...)
{
	char reason[200];
	va_list ap;

	va_start(ap, fmt);
	guest_vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	guest_printf("FAIL %s: %s\n", current_name, reason);
	guest_exit(1);
}

/* ---------------------------------------------------------------- cmdline */

const char *cmdline(void)
{
	return cmdline_orig;
}

/* Copy the command line out of the VMM's boot area (the AP trampoline and
 * scenarios may reuse low memory) and split it into key[=value] words. */
static void cmdline_parse(const char *src)
{
	size_t len = src ? memscan(src, 0, CMDLINE_MAX - 1) : 0;

	if (len)
		memcpy(cmdline_orig, src, len);
	memcpy(cmdline_split, cmdline_orig, len + 1);

	char *p = cmdline_split;
	while (*p && nr_params < MAX_PARAMS) {
		while (*p == ' ' || *p == '\t' || *p == '\n')
			*p++ = '\0';
		if (!*p)
			break;
		struct param *pr = &params[nr_params++];
		pr->key = p;
		pr->value = "";
		bool has_value = false;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
			if (*p == '=' && !has_value) {
				*p = '\0';
				pr->value = p + 1;
				has_value = true;
			}
			p++;
		}
	}
}

const char *param_get(const char *key)
{
	/* Last occurrence wins, like Linux's parser for repeated keys. */
	for (unsigned i = nr_params; i-- > 0;)
		if (strcmp(params[i].key, key) == 0)
			return params[i].value;
	return NULL;
}

bool parse_u64(const char *s, u64 *out)
{
	u64 v = 0;
	unsigned base = 10;

	if (!s || !*s)
		return false;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		if (!*s)
			return false;
	}
	for (; *s; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return false;
		v = v * base + d;
	}
	*out = v;
	return true;
}

u64 param_u64(const char *key, u64 def)
{
	u64 v;

	return parse_u64(param_get(key), &v) ? v : def;
}

/* ---------------------------------------------------------------- boot info */

const struct hvm_start_info *start_info(void)
{
	return boot_info;
}

const struct hvm_memmap_entry *memmap(u32 *count)
{
	*count = memmap_count;
	return memmap_count ? memmap_copy : NULL;
}

static void boot_info_save(const struct hvm_start_info *si)
{
	boot_info_copy = *si;
	boot_info = &boot_info_copy;
	/* memmap_paddr and memmap_entries exist from version 1 on. */
	if (si->version >= 1 && si->memmap_paddr) {
		memmap_count = si->memmap_entries < MEMMAP_MAX ? si->memmap_entries : MEMMAP_MAX;
		memcpy(memmap_copy, (const void *)si->memmap_paddr,
		       memmap_count * sizeof(memmap_copy[0]));
	}
}

u64 ram_top(void)
{
	u32 n;
	const struct hvm_memmap_entry *e = memmap(&n);
	u64 top = 0;

	for (u32 i = 0; i < n; i++)
		if (e[i].type == E820_RAM && e[i].addr + e[i].size > top)
			top = e[i].addr + e[i].size;
	return top;
}

/* ---------------------------------------------------------------- main */

static const struct scenario *scenario_find(const char *name)
{
	for (const struct scenario *s = __scenarios_start; s < __scenarios_end; s++)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

void guest_main(u64 start_info_gpa);
void guest_main(u64 start_info_gpa)
{
	const struct hvm_start_info *si = (const struct hvm_start_info *)start_info_gpa;

	percpu_init_bsp();
	serial_init();
	if (!si || si->magic != HVM_START_MAGIC) {
		guest_printf("FAIL boot: bad hvm_start_info at 0x%lx\n", (unsigned long)start_info_gpa);
		guest_exit(2);
	}
	boot_info_save(si);
	cmdline_parse((const char *)si->cmdline_paddr);
	idt_init();

	const char *name = param_get("test");
	if (!name || !*name)
		name = "hello";
	const struct scenario *s = scenario_find(name);
	if (!s) {
		guest_printf("FAIL unknown test '%s'\n", name);
		guest_exit(2);
	}
	current_name = s->name;
	s->run();
	pass();
}
