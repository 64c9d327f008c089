/* Checkpoint/restore of a whole VM to a directory:
 *   DIR/state.dtb    the state tree (migration/state.h)
 *   DIR/config.json  the VM configuration (api/config_json.h), covered by the
 *                    tree's config-digest
 *   DIR/memory       guest RAM as one sparse file (holes where RAM is zero)
 *
 * State tree root: version (format), vmm-version, host-cpu-vendor,
 * config-digest, memory-size, nr-vcpus; children /vcpus/cpu@N, /irqchip,
 * /pit, /clock, /devices/<name> (with `type`).
 *
 * Restore builds a fresh VM (no kernel is loaded) and parses and checks all
 * of the state before applying any of it; any error destroys the fresh VM,
 * so nothing is ever half-restored. The restored VM is left paused.
 *
 * Lazy restore maps DIR/memory MAP_PRIVATE: restore time does not grow with
 * RAM, pages are read on first touch and copied on first write. Such a VM's
 * RAM is not a memfd (guest_mem.fd == -1), so live update / vfio-user cannot
 * share it by fd; use "copy" for those. The snapshot directory must stay in
 * place while a lazily restored VM runs (a later snapshot into the same
 * directory is safe: files are replaced by rename, the mapped inode lives on). */
#ifndef MIGRATION_SNAPSHOT_H
#define MIGRATION_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/config.h"

struct vm;

#define SNAPSHOT_CONFIG_MAX (1u << 20)

enum snapshot_memory_mode { SNAPSHOT_MEMORY_COPY, SNAPSHOT_MEMORY_LAZY };

struct snapshot_restore_opts {
	enum snapshot_memory_mode memory;
	/* Host-side overrides (the host differs after a move); not part of the digest. */
	bool has_tap[CONFIG_MAX_NETS];
	char tap[CONFIG_MAX_NETS][CONFIG_IFNAME_MAX];
	bool has_console;
	enum console_kind console;
	const char *console_path;
};

struct snapshot_stats {
	uint64_t total_ns, state_ns, memory_ns;
	uint64_t memory_bytes_written;     /* non-zero data written to DIR/memory */
};

/* Save @vm, which must be paused (or created and never started), into @dir
 * (created if missing). The VM stays paused. */
int snapshot_save(struct vm *vm, const char *dir, struct snapshot_stats *stats, char *err,
		  size_t errlen);

/* Recreate a VM from @dir; on success *@out is paused (its vCPU threads are
 * parked), ready for vm_resume(). */
int snapshot_restore(struct vm **out, const char *dir, const struct snapshot_restore_opts *opts,
		     char *err, size_t errlen);

/* Query, while the VM still runs, what saving or applying its state needs
 * and never changes (KVM's vCPU state sizes and MSR list, the host CPU
 * vendor), so that none of it is paid while the VM is paused. Optional. */
int snapshot_prepare(struct vm *vm);

/* Build the state tree of a paused VM (used by snapshot_save and live migration). */
struct state_tree;
int snapshot_build_tree(struct vm *vm, const char *config_json, size_t config_len,
			struct state_tree **out, char *err, size_t errlen);
/* Parse and apply a state tree to a fresh, never-started VM built from the
 * same config (used by snapshot_restore and incoming migration). */
int snapshot_apply_tree(struct vm *vm, const void *blob, size_t len, const char *config_json,
			size_t config_len, char *err, size_t errlen);

/* Digest of config.json as stored in the tree ("fnv1a64:<16 hex>"). */
void snapshot_config_digest(const char *json, size_t len, char out[32]);

#endif
