/* 16550A UART (National Semiconductor PC16550D data sheet). Enough for
 * polled and interrupt-driven drivers: THR/RBR, IER, IIR/FCR, LCR with DLAB,
 * MCR (loopback), LSR, MSR, SCR; THRE and RDA interrupts on a level ISA line.
 *
 * Transmit without exits: while the THRE interrupt is off (polled drivers:
 * firmware, early consoles, our test guests), writes to the data port are
 * coalesced by KVM (vm_coalesced_pio) and reach uart_write() in order at the
 * next exit, a read of any UART register among them, or from the event loop
 * within a few ms (vm_coalesced_flush_soon on every register read: a polled
 * driver reads LSR before it writes). Nothing a guest can observe changes:
 * transmission is instantaneous here, LSR always says THR empty, and DLAB or
 * loopback writes are applied in guest order. Once a driver turns the THRE
 * interrupt on, which must follow each write at once, the port exits again. */
#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/legacy.h"
#include "migration/state.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define UART_RBR_THR 0
#define UART_IER     1
#define UART_IIR_FCR 2
#define UART_LCR     3
#define UART_MCR     4
#define UART_LSR     5
#define UART_MSR     6
#define UART_SCR     7

#define IER_RDI   0x01
#define IER_THRI  0x02
#define IIR_NO_INT 0x01
#define IIR_THRI  0x02
#define IIR_RDI   0x04
#define IIR_FIFO  0xc0
#define LCR_DLAB  0x80
#define MCR_OUT2  0x08
#define MCR_LOOP  0x10
#define LSR_DR    0x01
#define LSR_THRE  0x20
#define LSR_TEMT  0x40
#define MSR_DCD   0x80
#define MSR_DSR   0x20
#define MSR_CTS   0x10

static void uart_regs_reset(struct uart_regs *r)
{
	memset(r, 0, sizeof(*r));
	r->iir = IIR_NO_INT;
	r->lsr = LSR_THRE | LSR_TEMT;
	r->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	r->dll = 0x0c; /* 9600 baud */
}

/* Recompute IIR and drive the IRQ line; caller holds the lock. */
static void uart_update_irq_locked(struct uart *u)
{
	struct uart_regs *r = &u->regs;
	uint8_t iir = IIR_NO_INT;
	int level;

	if ((r->ier & IER_RDI) && (r->lsr & LSR_DR))
		iir = IIR_RDI;
	else if ((r->ier & IER_THRI) && r->thr_irq_pending)
		iir = IIR_THRI;
	r->iir = iir | (r->fcr & 1 ? IIR_FIFO : 0);
	level = iir != IIR_NO_INT;
	if (level != u->irq_level) {
		u->irq_level = level;
		u->irq_raised += (uint64_t)level;
		vm_irq_line(u->dev.vm, u->irq, level);
	}
}

/* Caller holds the lock. */
static void uart_tx_flush_locked(struct uart *u)
{
	const uint8_t *p = u->tx_buf;
	size_t n = u->tx_len;

	/* Console output is best effort: a closed terminal must not stop the guest. */
	while (n && u->out_fd >= 0) {
		ssize_t w = write(u->out_fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		n -= (size_t)w;
	}
	u->tx_len = 0;
}

/* Bytes from a replayed batch of coalesced writes go out in one write() at
 * its end (uart_flush); any other byte at once. Caller holds the lock. */
static void uart_output(struct uart *u, uint8_t c)
{
	u->tx_bytes++;
	if (u->out_fd < 0)
		return;
	u->tx_buf[u->tx_len++] = c;
	if (!vm_coalesced_replaying() || u->tx_len == sizeof(u->tx_buf))
		uart_tx_flush_locked(u);
}

static void uart_flush(void *opaque)
{
	struct uart *u = opaque;

	pthread_mutex_lock(&u->lock);
	uart_tx_flush_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static uint8_t uart_fifo_pop(struct uart_regs *r)
{
	uint8_t c;

	if (!r->rx_count)
		return 0;
	c = r->rx_fifo[r->rx_head];
	r->rx_head = (uint8_t)((r->rx_head + 1) % UART_FIFO_SIZE);
	if (--r->rx_count == 0)
		r->lsr &= (uint8_t)~LSR_DR;
	return c;
}

static size_t uart_fifo_push_locked(struct uart *u, const uint8_t *buf, size_t len)
{
	struct uart_regs *r = &u->regs;
	size_t n = 0;

	while (n < len && r->rx_count < UART_FIFO_SIZE) {
		r->rx_fifo[(r->rx_head + r->rx_count) % UART_FIFO_SIZE] = buf[n++];
		r->rx_count++;
	}
	if (r->rx_count)
		r->lsr |= LSR_DR;
	u->rx_bytes += n;
	return n;
}

size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len)
{
	size_t n;

	pthread_mutex_lock(&u->lock);
	n = uart_fifo_push_locked(u, buf, len);
	uart_update_irq_locked(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}

static void uart_input_resume_locked(struct uart *u);

/* THR writes stay coalesced only while the THRE interrupt is off (see the
 * top of this file). Turning it off again keeps them exiting: drivers that
 * use the interrupt toggle it per burst, and each change costs KVM an SRCU
 * grace period. Caller holds the lock. */
static void uart_tx_coalesce_check_locked(struct uart *u)
{
	if (u->tx_coalesced && (u->regs.ier & IER_THRI) &&
	    vm_coalesced_pio(u->dev.vm, u->base + UART_RBR_THR, 1, false) == 0)
		u->tx_coalesced = false;
}

static void uart_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct uart *u = opaque;
	struct uart_regs *r = &u->regs;
	uint8_t v = 0;

	if (u->tx_coalesced)
		vm_coalesced_flush_soon(u->dev.vm);
	pthread_mutex_lock(&u->lock);
	switch (off) {
	case UART_RBR_THR:
		if (r->lcr & LCR_DLAB) {
			v = r->dll;
		} else {
			v = uart_fifo_pop(r);
			uart_input_resume_locked(u);
		}
		break;
	case UART_IER:
		v = (r->lcr & LCR_DLAB) ? r->dlm : r->ier;
		break;
	case UART_IIR_FCR:
		v = r->iir;
		/* Reading IIR while it reports THRE clears that source (16550D §8.6). */
		if ((r->iir & 0x0f) == IIR_THRI)
			r->thr_irq_pending = 0;
		break;
	case UART_LCR: v = r->lcr; break;
	case UART_MCR: v = r->mcr; break;
	case UART_LSR: v = r->lsr; break;
	case UART_MSR: v = r->msr; break;
	case UART_SCR: v = r->scr; break;
	}
	uart_update_irq_locked(u);
	pthread_mutex_unlock(&u->lock);
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void uart_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct uart *u = opaque;
	struct uart_regs *r = &u->regs;
	uint8_t v = *(const uint8_t *)data;

	pthread_mutex_lock(&u->lock);
	switch (off) {
	case UART_RBR_THR:
		if (r->lcr & LCR_DLAB) {
			r->dll = v;
		} else if (r->mcr & MCR_LOOP) {
			uart_fifo_push_locked(u, &v, 1);
		} else {
			uart_output(u, v);
			r->thr_irq_pending = 1; /* transmit is instantaneous */
		}
		break;
	case UART_IER:
		if (r->lcr & LCR_DLAB) {
			r->dlm = v;
		} else {
			/* Enabling THRI with an empty THR raises the interrupt at once. */
			if (!(r->ier & IER_THRI) && (v & IER_THRI))
				r->thr_irq_pending = 1;
			r->ier = v & 0x0f;
			uart_tx_coalesce_check_locked(u);
		}
		break;
	case UART_IIR_FCR:
		r->fcr = v;
		if (v & 0x02) { /* clear RX FIFO */
			r->rx_count = 0;
			r->lsr &= (uint8_t)~LSR_DR;
			uart_input_resume_locked(u);
		}
		break;
	case UART_LCR: r->lcr = v; break;
	case UART_MCR: r->mcr = v & 0x1f; break;
	case UART_SCR: r->scr = v; break;
	default: break; /* LSR and MSR are read-only */
	}
	uart_update_irq_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static const struct bus_ops uart_bus_ops = { .read = uart_read, .write = uart_write, .flush = uart_flush };

/* EOF or error on the input: stop watching it. */
static void uart_input_stop_locked(struct uart *u)
{
	evl_del_fd(&u->dev.vm->loop, u->poll_fd);
	if (u->poll_fd != u->in_fd)
		close(u->poll_fd);
	u->in_fd = u->poll_fd = -1;
}

/* Host input: take only what the RX FIFO has room for. When it is full, stop
 * polling the input until the guest reads a byte, so typed or piped input is
 * never dropped (the host side buffers it, as a flow-controlled line would). */
static void uart_input_ready(void *opaque, uint32_t events)
{
	struct uart *u = opaque;
	uint8_t buf[UART_FIFO_SIZE];
	size_t room;
	ssize_t n;

	pthread_mutex_lock(&u->lock);
	room = UART_FIFO_SIZE - u->regs.rx_count;
	if (room == 0) {
		u->input_paused = evl_mod_fd(&u->dev.vm->loop, u->poll_fd, 0) == 0;
		pthread_mutex_unlock(&u->lock);
		return;
	}
	n = read(u->in_fd, buf, room);
	if (n > 0) {
		uart_fifo_push_locked(u, buf, (size_t)n);
		uart_update_irq_locked(u);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		/* EOF or error on stdin: stop watching it. */
		uart_input_stop_locked(u);
	}
	pthread_mutex_unlock(&u->lock);
	(void)events;
}

/* The guest made room in the RX FIFO: poll the host input again. Caller holds the lock. */
static void uart_input_resume_locked(struct uart *u)
{
	if (u->input_paused && u->in_fd >= 0 && u->regs.rx_count < UART_FIFO_SIZE &&
	    evl_mod_fd(&u->dev.vm->loop, u->poll_fd, EPOLLIN) == 0)
		u->input_paused = false;
}

static void uart_reset(struct device *dev)
{
	struct uart *u = (struct uart *)dev;

	pthread_mutex_lock(&u->lock);
	uart_regs_reset(&u->regs);
	uart_update_irq_locked(u);
	pthread_mutex_unlock(&u->lock);
}

static void uart_destroy(struct device *dev)
{
	struct uart *u = (struct uart *)dev;

	if (u->owns_out_fd && u->out_fd >= 0)
		close(u->out_fd);
	if (u->poll_fd >= 0 && u->poll_fd != u->in_fd)
		close(u->poll_fd);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

/* State node (version 1): the registers as u32 cells, the RX FIFO contents
 * oldest first, the latched THRE interrupt. */
#define UART_STATE_VERSION 1

static const struct { const char *name; size_t off; uint8_t max; } uart_state_regs[] = {
	{ "ier", offsetof(struct uart_regs, ier), 0x0f },
	{ "lcr", offsetof(struct uart_regs, lcr), 0xff },
	{ "mcr", offsetof(struct uart_regs, mcr), 0x1f },
	{ "lsr", offsetof(struct uart_regs, lsr), 0xff },
	{ "msr", offsetof(struct uart_regs, msr), 0xff },
	{ "scr", offsetof(struct uart_regs, scr), 0xff },
	{ "dll", offsetof(struct uart_regs, dll), 0xff },
	{ "dlm", offsetof(struct uart_regs, dlm), 0xff },
	{ "fcr", offsetof(struct uart_regs, fcr), 0xff },
	{ "thr-irq-pending", offsetof(struct uart_regs, thr_irq_pending), 1 },
};

static int uart_save(struct device *dev, struct state_node *node)
{
	struct uart *u = (struct uart *)dev;
	uint8_t fifo[UART_FIFO_SIZE];
	int ret;

	pthread_mutex_lock(&u->lock);
	ret = state_set_version(node, UART_STATE_VERSION);
	for (size_t i = 0; i < sizeof(uart_state_regs) / sizeof(uart_state_regs[0]); i++)
		ret |= state_put_u32(node, uart_state_regs[i].name,
				     ((const uint8_t *)&u->regs)[uart_state_regs[i].off]);
	for (unsigned i = 0; i < u->regs.rx_count; i++)
		fifo[i] = u->regs.rx_fifo[(u->regs.rx_head + i) % UART_FIFO_SIZE];
	ret |= state_put_bytes(node, "rx-fifo", fifo, u->regs.rx_count);
	pthread_mutex_unlock(&u->lock);
	return ret ? -EINVAL : 0;
}

static int uart_load(struct device *dev, const struct state_node *node)
{
	struct uart *u = (struct uart *)dev;
	struct uart_regs r;
	size_t count;
	uint32_t v;

	/* Parse into a local copy; commit only when all of it checks out. */
	uart_regs_reset(&r);
	if (state_node_version(node, 1, UART_STATE_VERSION, NULL))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(uart_state_regs) / sizeof(uart_state_regs[0]); i++) {
		if (state_get_u32_range(node, uart_state_regs[i].name, 0, uart_state_regs[i].max, &v))
			return -EINVAL;
		((uint8_t *)&r)[uart_state_regs[i].off] = (uint8_t)v;
	}
	if (state_get_bytes_max(node, "rx-fifo", r.rx_fifo, UART_FIFO_SIZE, &count))
		return -EINVAL;
	r.rx_head = 0;
	r.rx_count = (uint8_t)count;
	/* Data-ready follows the FIFO, whatever the saved LSR said. */
	r.lsr = (uint8_t)((r.lsr & ~LSR_DR) | (count ? LSR_DR : 0));
	pthread_mutex_lock(&u->lock);
	u->regs = r;
	u->irq_level = 0;
	uart_tx_coalesce_check_locked(u);
	uart_update_irq_locked(u);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

/* vm.counters: bytes each way and how often the interrupt line was raised. */
static void uart_counters(struct device *dev, struct cJSON *obj)
{
	struct uart *u = (struct uart *)dev;

	pthread_mutex_lock(&u->lock);
	cJSON_AddNumberToObject(obj, "tx_bytes", (double)u->tx_bytes);
	cJSON_AddNumberToObject(obj, "rx_bytes", (double)u->rx_bytes);
	cJSON_AddNumberToObject(obj, "interrupts", (double)u->irq_raised);
	pthread_mutex_unlock(&u->lock);
}

static const struct device_ops uart_ops = {
	.type = "uart",
	.counters = uart_counters,
	.reset = uart_reset,
	.destroy = uart_destroy,
	.save = uart_save,
	.load = uart_load,
};

/* Watch @in_fd on the event loop. Regular files (stdin redirected from a
 * file) cannot be polled: they are always readable, so a permanently
 * signalled eventfd stands in for them and the callback reads the file. */
static void uart_input_start(struct uart *u, int in_fd)
{
	struct event_loop *loop = &u->dev.vm->loop;
	struct stat st;
	uint64_t one = 1;
	int efd;

	if (fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode)) {
		efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (efd < 0 || write(efd, &one, sizeof(one)) != sizeof(one) ||
		    evl_add_fd(loop, efd, EPOLLIN, uart_input_ready, u)) {
			if (efd >= 0)
				close(efd);
			log_warn(u->dev.name, "cannot read console input from a file");
			return;
		}
		u->poll_fd = efd;
	} else if (evl_add_fd(loop, in_fd, EPOLLIN, uart_input_ready, u) == 0) {
		u->poll_fd = in_fd;
	} else {
		return; /* e.g. /dev/null: no input */
	}
	u->in_fd = in_fd;
}

int uart_create(struct vm *vm, uint16_t base, unsigned irq, int out_fd, bool owns_out_fd,
		int in_fd, struct uart **out)
{
	struct uart *u = calloc(1, sizeof(*u));
	int ret;

	if (!u)
		return -ENOMEM;
	pthread_mutex_init(&u->lock, NULL);
	uart_regs_reset(&u->regs);
	u->irq = irq;
	u->out_fd = out_fd;
	u->owns_out_fd = owns_out_fd;
	u->in_fd = u->poll_fd = -1;
	u->base = base;
	vm_add_device(vm, &u->dev, &uart_ops, "uart0");
	ret = bus_register(&vm->pio, base, 8, &uart_bus_ops, u, "uart0");
	if (ret)
		return ret;
	/* Without the capability every write exits, as before. */
	u->tx_coalesced = vm_coalesced_pio(vm, base + UART_RBR_THR, 1, true) == 0;
	if (in_fd >= 0)
		uart_input_start(u, in_fd);
	if (out)
		*out = u;
	return 0;
}
