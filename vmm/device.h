/* The common device header. Every device embeds struct device and registers a
 * const ops table; the VM keeps them in a list for reset, teardown, info and
 * state save/load. */
#ifndef VMM_DEVICE_H
#define VMM_DEVICE_H

#include <stdint.h>

struct vm;
struct device;
struct state_node;   /* migration/state.h */
struct cJSON;

struct device_ops {
	const char *type;                                   /* "uart", "virtio-net", ... */
	void (*reset)(struct device *dev);                  /* VM reset */
	void (*destroy)(struct device *dev);                /* free everything */
	/* Checkpoint/restore; a device without save makes snapshots fail naming it. */
	int (*save)(struct device *dev, struct state_node *node);
	int (*load)(struct device *dev, const struct state_node *node);
	/* Optional: add a summary and counters to a JSON object for vm.info / vm.counters. */
	void (*info)(struct device *dev, struct cJSON *obj);
	void (*counters)(struct device *dev, struct cJSON *obj);
	/* Optional, for devices whose back end runs outside the vCPUs (event
	 * loop, io_uring): quiesce stops it and returns once no work is in
	 * flight, so nothing writes guest RAM or consumes back-end data until
	 * unquiesce restarts it (and looks again at what arrived meanwhile).
	 * vm_pause() quiesces every device after the vCPUs stopped, and
	 * vm_resume() unquiesces before they run: a paused VM is frozen as a
	 * whole for the final dirty pass, the state save and the hand-over. */
	void (*quiesce)(struct device *dev);
	void (*unquiesce)(struct device *dev);
};

struct device {
	const struct device_ops *ops;
	char name[32];                 /* unique per VM, e.g. "uart0", "net0"; log prefix */
	struct vm *vm;
	struct device *next;
};

#endif
