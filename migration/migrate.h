/* Live migration and live update of a running VM (stream format: stream.h).
 *
 * Source: mig_source_start() runs the migration on its own thread while the
 * VM keeps running: pre-copy passes driven by the dirty log until the rest
 * fits the downtime limit (or the pass limit is hit), then pause, last pass,
 * state tree, DONE, the destination's ready ACK, COMMIT, its final ACK. The
 * source owns the VM until it has sent COMMIT: any failure before (destination
 * gone, garbage, cancel, timeout) stops dirty logging and resumes the VM, and
 * the reason is kept in the progress. After the final ACK the source VM is
 * told to exit (status 0, "migrated to URL"); without it, the VM stays paused
 * here (the destination may be running it; stream.h has the whole table).
 * A paused VM migrates too (nothing is dirtied: one pass) and stays paused at
 * the destination.
 *
 * Live update (params.local): the RAM memfd and every virtio-net's queue fds
 * (TAP/macvtap) go over SCM_RIGHTS; the destination maps the same pages and
 * uses the same queues. Only the state tree is copied, during a pause that
 * does not grow with RAM size. The source keeps its own fds untouched until
 * it stops for good, so a failed update leaves it as it was.
 *
 * Destination: mig_incoming() listens, receives, acks the complete stream
 * (ready) and returns a running VM only after the source's COMMIT; on any
 * incomplete or bad stream, or no COMMIT, it tells the source why (if it
 * still can) and returns an error without ever running the guest. */
#ifndef MIGRATION_MIGRATE_H
#define MIGRATION_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

#define MIG_DEFAULT_DOWNTIME_MS 50
#define MIG_DEFAULT_MAX_PASSES 30
#define MIG_URL_MAX 300

struct mig_params {
	char url[MIG_URL_MAX];
	unsigned downtime_ms;        /* 0: default */
	unsigned connections;        /* 0/1: one; up to MIG_MAX_LANES (TCP or UNIX) */
	unsigned max_passes;         /* 0: default */
	bool local;                  /* live update: hand over the memfd instead of copying */
	int ack_timeout_ms;          /* how long the source waits for each ACK (0: 30 s) */
};

enum mig_status { MIG_STATUS_NONE, MIG_STATUS_ACTIVE, MIG_STATUS_COMPLETED, MIG_STATUS_FAILED,
		  MIG_STATUS_CANCELLED };

const char *mig_status_name(enum mig_status s);

struct mig_progress {
	enum mig_status status;
	bool paused;                 /* in the stop-and-copy phase */
	unsigned pass;               /* 0-based pass being sent */
	uint64_t bytes_sent;         /* all lanes, headers included */
	uint64_t pages_sent, zero_pages;
	uint64_t dirty_rate_pps;     /* pages dirtied per second during the last pass */
	uint64_t remaining_bytes;    /* dirty pages left after the last pass, in bytes */
	uint64_t remaining_fresh_bytes; /* of those, pages the destination does not hold yet */
	uint64_t bandwidth_bps;      /* best pass so far, bytes/s */
	uint64_t fresh_bandwidth_bps; /* latest rate into pages the destination did not hold */
	uint64_t expected_downtime_us;
	uint64_t total_us;           /* so far, or in all when done */
	uint64_t downtime_us;        /* measured pause (pause -> destination's final ACK) */
	/* Where the pause went: stopping the vCPUs, the last pass, saving and
	 * sending the state tree, and the destination (DONE -> ready ACK: apply). */
	uint64_t stop_vcpus_us, last_pass_us, state_save_us, dest_ack_us;
	uint64_t state_bytes;
	char message[512];           /* why it failed, or where it went */
};

struct mig_source;

/* Start migrating a RUNNING (or PAUSED) @vm. Fails at once (-EBUSY/-EINVAL, @err) if the
 * VM is not running or the URL is bad; later failures land in the progress. */
int mig_source_start(struct mig_source **out, struct vm *vm, const struct mig_params *p,
		     char *err, size_t errlen);
/* Ask the migration to stop; the VM keeps (or resumes) running. -EBUSY once
 * the final state has been sent (the destination may already own the VM). */
int mig_source_cancel(struct mig_source *ms);
void mig_source_progress(struct mig_source *ms, struct mig_progress *out);
/* Whether the migration thread has finished (progress is final). */
bool mig_source_done(struct mig_source *ms);
/* Join the thread and free; returns 0 if it completed. NULL is fine. */
int mig_source_free(struct mig_source *ms);

/* Destination. */
struct mig_incoming_opts {
	int accept_timeout_ms;       /* < 0 or 0: wait forever for the source */
	int frame_timeout_ms;        /* a source silent this long is given up on (0: 30 s) */
	/* Host-side override (the host differs after a move). */
	bool has_console;
	int console;                 /* enum console_kind */
	const char *console_path;
	/* Back guest RAM with an unlinked file in this directory instead of a memfd
	 * (e.g. a tmpfs or hugetlbfs mount); running out of space there fails the
	 * migration cleanly. */
	const char *memory_dir;
	/* Fault all of guest RAM in (on every CPU) before the first page arrives:
	 * the migration fails up front if the host lacks the memory, and the
	 * stream then runs at copy speed instead of page-allocation speed; at the
	 * cost of backing pages the guest never used. */
	bool prefault;
	/* When readable, stop waiting for a source (-ECANCELED); -1 or 0: none. */
	int cancel_fd;
};

struct mig_incoming_stats {
	uint64_t total_us, pages, zero_pages, bytes_received, state_bytes;
	bool local;
};

/* Listen on @url, receive one VM, ack it and return it RUNNING in *@out. */
int mig_incoming(const char *url, const struct mig_incoming_opts *o, struct vm **out,
		 struct mig_incoming_stats *stats, char *err, size_t errlen);

/* CLI (migration/migrate_cli.c): `vmm run --incoming URL ...` and `vmm migrate`. */
bool cli_run_wants_incoming(int argc, char **argv);
int cli_run_incoming(int argc, char **argv);
int cli_migrate(int argc, char **argv);

#endif
