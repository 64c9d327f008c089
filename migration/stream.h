/* The live-migration stream: framed, versioned, checksummed messages over a
 * connected stream socket (UNIX or TCP).
 *
 * Every frame is a 16-byte header followed by `len` payload bytes:
 *
 *	u32 magic   'VMMF' (0x464d4d56 little-endian)
 *	u16 type    enum mig_frame_type
 *	u16 flags   0 (reserved: a receiver refuses anything else)
 *	u32 len     payload bytes; bounded per type (mig_frame_max_len)
 *	u32 crc     CRC32C (Castagnoli) of the header with crc = 0, then the payload
 *
 * All integers are little-endian. A session is
 *
 *	source                                   destination
 *	HELLO (version, features, page size,
 *	       RAM size, lanes)             ->
 *	                                    <-   ACK (hello accepted) | ERROR
 *	[MEMFD + SCM_RIGHTS fd]  (live update only)
 *	[NETFDS + SCM_RIGHTS fds, one per virtio-net]  (live update only)
 *	CONFIG (vm.create JSON)             ->
 *	                                    <-   ACK (VM built) | ERROR
 *	PAGES ... (passes, on every lane)   ->
 *	[SYNC (token), on any lane          ->
 *	                                    <-   SYNC (same token, same lane)]
 *	LANE_END (on every extra lane)      ->
 *	STATE (state tree DTB)              ->
 *	DONE (flags: leave paused)          ->
 *	                                    <-   ACK (ready: state applied, nothing runs) | ERROR
 *	COMMIT (the source has stopped for good) ->
 *	                                    <-   ACK (running here; for the source's report only)
 *
 * The hand-over is the COMMIT: the destination runs the guest (vCPUs, device
 * back ends, any guest-RAM write) only after receiving it, and the source
 * sends it only after the ready ACK, never resuming after a COMMIT that may
 * have arrived. Each side on each failure:
 *   - before the ready ACK reaches the source: the source resumes; the
 *     destination (no COMMIT) exits without running the guest;
 *   - the COMMIT send fails: nothing of it arrived (a partial frame fails its
 *     checksum), so the source resumes and the destination exits;
 *   - COMMIT sent, no final ACK (connection cut, destination killed): the
 *     destination may run the guest or may never have seen the COMMIT; the
 *     source cannot tell, so it keeps the VM paused (never resumes by
 *     itself) and says so; an operator who knows the destination does not
 *     run the guest may vm.resume it there;
 *   - COMMIT and final ACK: the source's VM exits ("migrated to URL").
 *
 * SYNC (feature MIG_FEAT_SYNC) measures the destination: it answers on the
 * same connection once every frame before it there is in RAM, so the source
 * can time how fast the destination takes pages, which its own send queue
 * does not tell (a TCP peer's kernel acks what its receiver has not read).
 *
 * The receiver treats everything as hostile: unknown types, oversized or
 * truncated frames, bad checksums and out-of-range fields are refused with an
 * ERROR frame whose text reaches the sender (and its API/CLI user). */
#ifndef MIGRATION_STREAM_H
#define MIGRATION_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define MIG_MAGIC 0x464d4d56u            /* "VMMF" as little-endian bytes */
#define MIG_VERSION 2                   /* 2: COMMIT hand-over (1 ran the guest at the first ACK) */
#define MIG_HDR_SIZE 16
#define MIG_PAGE_SIZE 4096u
#define MIG_PAGES_PER_FRAME 256u         /* 1 MiB of page data per PAGES frame at most */
#define MIG_CONFIG_MAX (1u << 20)
#define MIG_ERROR_MAX 512u
#define MIG_MAX_LANES 8u
#define MIG_MAX_FDS 16u                  /* fds one frame may carry (a NIC's queue pairs) */

/* Features a source may ask for in HELLO; a destination refuses unknown bits. */
#define MIG_FEAT_LOCAL    (1u << 0)      /* live update: RAM arrives as a memfd over SCM_RIGHTS */
#define MIG_FEAT_SYNC     (1u << 1)      /* the source may send SYNC between PAGES frames */
#define MIG_FEATURES_KNOWN (MIG_FEAT_LOCAL | MIG_FEAT_SYNC)

enum mig_frame_type {
	MIG_HELLO = 1,
	MIG_CONFIG = 2,
	MIG_PAGES = 3,
	MIG_STATE = 4,
	MIG_DONE = 5,
	MIG_ACK = 6,
	MIG_ERROR = 7,
	MIG_LANE_END = 8,
	MIG_MEMFD = 9,
	MIG_NETFDS = 10,
	MIG_COMMIT = 11,
	MIG_SYNC = 12,                   /* u64 token; echoed by the destination */
	MIG_FRAME_TYPE_MAX = MIG_SYNC,
};

/* Frame types that carry fds (SCM_RIGHTS); a receiver takes fds only when
 * it allows one of these. */
#define MIG_FD_TYPES (MIG_TYPE_BIT(MIG_MEMFD) | MIG_TYPE_BIT(MIG_NETFDS))

#define MIG_TYPE_BIT(t) (1u << (t))

/* HELLO payload (32 bytes). */
struct mig_hello {
	uint32_t version;
	uint32_t features;
	uint32_t page_size;
	uint32_t lanes;                  /* 1 + extra connections that follow */
	uint64_t mem_size;               /* bytes of guest RAM */
	uint32_t lane_index;             /* 0 on the main connection; extra lanes say which */
	uint32_t session;                /* random id tying extra lanes to their session */
};
#define MIG_HELLO_SIZE 32

/* DONE payload: u32 flags. */
#define MIG_DONE_PAUSED 1u               /* the VM was paused at the source: keep it paused */

/* NETFDS payload (16 bytes): u32 net index (the config's nets[]), u32 fd
 * count (the NIC's queue pairs, 1..MIG_MAX_FDS; exactly that many fds come
 * with the frame, queue pair order), u32 TUN_F_* offloads the back end
 * accepts, u32 reserved (0). */
#define MIG_NETFDS_SIZE 16

/* PAGES payload: u32 count, u32 reserved (0), count x u64 entries, then the
 * data: 4096 bytes for every entry that is not a zero page, in entry order.
 * An entry is the page's byte offset in guest RAM (the memfd) with bit 0 set
 * for "this page is all zeroes" (no data for it). Entries first, so a
 * receiver knows where every page goes before its data arrives and can
 * receive it in place. */
#define MIG_PAGE_ZERO 1ULL

const char *mig_frame_name(unsigned type);
/* The largest payload a receiver accepts for @type (0 for unknown types). */
size_t mig_frame_max_len(unsigned type);

uint32_t mig_crc32c(uint32_t crc, const void *data, size_t len);

/* One connection. err holds the last failure in words (ours or the peer's). */
struct mig_stream {
	int fd;
	uint8_t *buf;                    /* receive buffer (grows to the largest frame seen) */
	size_t buf_size;
	uint64_t bytes_sent, bytes_received;
	int recv_timeout_ms;             /* 0: wait forever */
	char err[MIG_ERROR_MAX];
};

struct mig_frame {
	unsigned type;
	const uint8_t *data;             /* valid until the next receive on the stream */
	size_t len;
	int fds[MIG_MAX_FDS];            /* MEMFD/NETFDS: received fds (the caller owns them) */
	unsigned nr_fds;
};

/* Close the fds a frame brought (after a refusal). */
void mig_frame_close_fds(struct mig_frame *f);

void mig_stream_init(struct mig_stream *s, int fd);
/* Close the socket and free the buffer. */
void mig_stream_close(struct mig_stream *s);

/* Encode a header for @payload into @hdr (used by the batching sender too). */
void mig_frame_header(uint8_t hdr[MIG_HDR_SIZE], unsigned type, const void *payload, size_t len);
/* The same for a payload in pieces (@iov, @n entries, in order). */
void mig_frame_header_iov(uint8_t hdr[MIG_HDR_SIZE], unsigned type, const struct iovec *iov, unsigned n);

int mig_send(struct mig_stream *s, unsigned type, const void *payload, size_t len);
/* Send @iov (a whole frame, header included); the entries are used up. */
int mig_send_iov(struct mig_stream *s, struct iovec *iov, unsigned n);
/* Send a frame and @fd alongside it (SCM_RIGHTS; UNIX sockets only). The
 * sender keeps its own fds: the peer gets new references to the same files. */
int mig_send_fd(struct mig_stream *s, unsigned type, const void *payload, size_t len, int fd);
int mig_send_fds(struct mig_stream *s, unsigned type, const void *payload, size_t len, const int *fds,
		 unsigned nr_fds);
/* Tell the peer why we give up; best effort (the socket may be gone). */
void mig_send_error(struct mig_stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Receive one frame whose type is in @allowed (MIG_TYPE_BIT()s). A frame of
 * an fd-carrying type must bring 1..MIG_MAX_FDS fds (MEMFD exactly one);
 * fds on any other frame are closed and refused. An ERROR
 * frame from the peer is always accepted and turned into -ECONNABORTED with
 * the peer's text in s->err. Returns 0, or -EPROTO (malformed, s->err says
 * how), -ECONNRESET (peer closed), -ETIMEDOUT, or another -errno. */
int mig_recv(struct mig_stream *s, struct mig_frame *f, uint32_t allowed);

/* Receiving one frame in pieces, for PAGES whose data goes straight into
 * guest RAM: begin reads and checks the header as mig_recv does (fds are not
 * taken; an ERROR frame is read whole and returned as -ECONNABORTED with the
 * peer's text in s->err), part reads the next payload bytes into @iov (at
 * most MIG_RX_MAX_IOV entries; never past the payload), end checks that the
 * payload is used up and its CRC. What part wrote is unchecked until end. */
#define MIG_RX_MAX_IOV (MIG_PAGES_PER_FRAME + 2)

struct mig_rx {
	unsigned type;
	uint32_t len, left;
	uint32_t crc, crc_want;
};

int mig_recv_begin(struct mig_stream *s, struct mig_rx *rx, uint32_t allowed);
int mig_recv_part(struct mig_stream *s, struct mig_rx *rx, const struct iovec *iov, unsigned n);
int mig_recv_end(struct mig_stream *s, struct mig_rx *rx);
/* After begin, for a frame to take whole after all: its payload into @f, as mig_recv. */
int mig_recv_whole(struct mig_stream *s, struct mig_rx *rx, struct mig_frame *f);

/* Little-endian field helpers for payloads. */
static inline void mig_put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void mig_put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t mig_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t mig_get_u64(const uint8_t *p)
{
	return (uint64_t)mig_get_u32(p) | (uint64_t)mig_get_u32(p + 4) << 32;
}

void mig_hello_encode(const struct mig_hello *h, uint8_t out[MIG_HELLO_SIZE]);
/* Decode and check a HELLO; on refusal, -EPROTO with the reason in @err. */
int mig_hello_decode(const uint8_t *data, size_t len, struct mig_hello *h, char *err, size_t errlen);

#endif
