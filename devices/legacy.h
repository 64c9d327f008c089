/* Legacy x86 platform devices: 16550 UART, i8042 (reset only), the debug-exit
 * port, and the hardware-reduced ACPI sleep/reset registers. */
#ifndef DEVICES_LEGACY_H
#define DEVICES_LEGACY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/device.h"

struct vm;

#define UART_FIFO_SIZE 64

/* 16550A register state (the subset a guest driver uses). */
struct uart_regs {
	uint8_t ier, iir, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t rx_fifo[UART_FIFO_SIZE];
	uint8_t rx_head, rx_count;
	uint8_t thr_irq_pending;     /* THRE interrupt latched until IIR is read */
};

struct uart {
	struct device dev;
	pthread_mutex_t lock;
	struct uart_regs regs;
	unsigned irq;
	int out_fd;                  /* -1: discard */
	int in_fd;                   /* -1: no input */
	int poll_fd;                 /* what the event loop watches: in_fd, or an eventfd for files */
	bool input_paused;           /* RX FIFO full: in_fd not polled until the guest reads */
	int irq_level;               /* last level driven on the line */
	bool owns_out_fd;
	bool tx_coalesced;           /* THR writes buffered by KVM (vm_coalesced_pio) */
	uint8_t tx_buf[64];          /* output of one replayed batch, written at its end */
	unsigned tx_len;
	uint16_t base;
	uint64_t tx_bytes, rx_bytes, irq_raised;
};

/* Create the UART at @base/@irq writing guest output to @out_fd and feeding
 * host input from @in_fd (read on the VM's event loop). */
int uart_create(struct vm *vm, uint16_t base, unsigned irq, int out_fd, bool owns_out_fd,
		int in_fd, struct uart **out);
/* Feed bytes as if typed; returns how many fit in the FIFO. */
size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len);

int i8042_create(struct vm *vm);
int debug_exit_create(struct vm *vm);
int acpi_pm_create(struct vm *vm);

#endif
