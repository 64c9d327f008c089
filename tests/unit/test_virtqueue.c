/* Split virtqueue parsing: good chains, malformed chains -> NEEDS_RESET, EVENT_IDX. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "devices/virtio.h"

#define RAM_SIZE   (2u << 20)
#define QSZ        8
#define DESC_GPA   0x10000
#define AVAIL_GPA  0x11000
#define USED_GPA   0x12000
#define BUF_GPA    0x20000
#define ITAB_GPA   0x30000

static struct guest_mem mem;
static struct virtio_device vdev;
static struct virtqueue *vq;
static struct virtq_elem elem;
static int notifies;

static int count_notify(void *opaque, uint16_t vector)
{
	notifies++;
	return 0;
}

static const struct virtio_transport_ops transport = { .notify = count_notify };

static struct vring_desc *desc_at(uint64_t gpa, unsigned i)
{
	return (struct vring_desc *)mem_gpa_to_hva(&mem, gpa + 16ULL * i, 16);
}

static struct vring_avail *avail(void) { return mem_gpa_to_hva(&mem, AVAIL_GPA, 4 + 2 * QSZ + 2); }
static struct vring_used *used(void) { return mem_gpa_to_hva(&mem, USED_GPA, 4 + 8 * QSZ + 2); }

static void set_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct vring_desc *d = desc_at(table, i);

	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

/* Publish @head as the next available chain. */
static void post(uint16_t head)
{
	struct vring_avail *a = avail();

	a->ring[a->idx % QSZ] = head;
	a->idx++;
}

static void start_device(uint64_t features)
{
	pthread_mutex_lock(&vdev.lock);
	virtio_device_set_status(&vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	virtio_device_set_guest_features(&vdev, 0, (uint32_t)features);
	virtio_device_set_guest_features(&vdev, 1, (uint32_t)(features >> 32));
	virtio_device_set_status(&vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					VIRTIO_CONFIG_S_FEATURES_OK);
	vq->st.size = QSZ;
	vq->st.desc_addr = DESC_GPA;
	vq->st.avail_addr = AVAIL_GPA;
	vq->st.used_addr = USED_GPA;
	vq->st.msix_vector = 1;
	cr_assert_eq(virtq_enable(vq), 0);
	virtio_device_set_status(&vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	pthread_mutex_unlock(&vdev.lock);
}

#define ALL_FEATURES ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | \
		      (1ULL << VIRTIO_RING_F_EVENT_IDX))

static void setup(void)
{
	cr_assert_eq(mem_init(&mem, RAM_SIZE), 0);
	cr_assert_eq(virtio_device_init(&vdev, "vq-test", &mem, 1, 1, QSZ, NULL, NULL), 0);
	vdev.transport = &transport;
	vq = &vdev.vqs[0];
	notifies = 0;
	start_device(ALL_FEATURES);
}

static void teardown(void)
{
	virtio_device_destroy(&vdev);
	mem_destroy(&mem);
}

static int pop(void)
{
	int r;

	pthread_mutex_lock(&vdev.lock);
	r = virtq_pop(vq, &elem);
	pthread_mutex_unlock(&vdev.lock);
	return r;
}

static void assert_broken(void)
{
	cr_assert(vdev.broken);
	cr_assert(vdev.st.status & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* A broken device processes nothing more. */
	cr_assert_eq(pop(), 0);
}

TestSuite(virtqueue, .init = setup, .fini = teardown);

Test(virtqueue, good_chain_pop_push_marks_dirty)
{
	uint8_t *buf = mem_gpa_to_hva(&mem, BUF_GPA + 0x100, 64);

	set_desc(DESC_GPA, 0, BUF_GPA, 10, VRING_DESC_F_NEXT, 3);
	set_desc(DESC_GPA, 3, BUF_GPA + 0x40, 20, VRING_DESC_F_NEXT, 5);
	set_desc(DESC_GPA, 5, BUF_GPA + 0x100, 64, VRING_DESC_F_WRITE, 0);
	post(0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(elem.head, 0);
	cr_assert_eq(elem.out_num, 2);
	cr_assert_eq(elem.in_num, 1);
	cr_assert_eq(elem.out_len, 30);
	cr_assert_eq(elem.in_len, 64);
	cr_assert_eq(elem.iov[2].iov_base, buf);
	cr_assert_eq(pop(), 0);

	/* Clear the dirty bitmap, then push: used ring and written buffer get marked. */
	for (uint64_t w = 0; w < (mem.nr_pages + 63) / 64; w++)
		mem_take_dirty_word(&mem, w);
	memset(buf, 0xaa, 40);
	pthread_mutex_lock(&vdev.lock);
	virtq_push(vq, &elem, 40);
	virtq_notify(vq);
	pthread_mutex_unlock(&vdev.lock);
	cr_assert_eq(used()->idx, 1);
	cr_assert_eq(used()->ring[0].id, 0);
	cr_assert_eq(used()->ring[0].len, 40);
	uint64_t w0 = mem_take_dirty_word(&mem, 0);
	cr_assert(w0 & (1ULL << (USED_GPA / 4096)), "used ring page not dirty");
	cr_assert(w0 & (1ULL << (BUF_GPA / 4096)), "RX buffer page not dirty");
	cr_assert_eq(notifies, 1);
}

Test(virtqueue, indirect_chain)
{
	set_desc(ITAB_GPA, 0, BUF_GPA, 12, VRING_DESC_F_NEXT, 1);
	set_desc(ITAB_GPA, 1, BUF_GPA + 0x100, 100, VRING_DESC_F_NEXT, 2);
	set_desc(ITAB_GPA, 2, BUF_GPA + 0x200, 50, VRING_DESC_F_WRITE, 0);
	set_desc(DESC_GPA, 2, ITAB_GPA, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	post(2);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(elem.head, 2);
	cr_assert_eq(elem.out_num, 2);
	cr_assert_eq(elem.in_num, 1);
	cr_assert_eq(elem.out_len, 112);
	cr_assert(!vdev.broken);
}

Test(virtqueue, loop_is_rejected)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 10, VRING_DESC_F_NEXT, 1);
	set_desc(DESC_GPA, 1, BUF_GPA, 10, VRING_DESC_F_NEXT, 0);
	post(0);
	cr_assert_eq(pop(), -ELOOP);
	assert_broken();
}

Test(virtqueue, indirect_loop_is_rejected)
{
	set_desc(ITAB_GPA, 0, BUF_GPA, 10, VRING_DESC_F_NEXT, 1);
	set_desc(ITAB_GPA, 1, BUF_GPA, 10, VRING_DESC_F_NEXT, 0);
	set_desc(DESC_GPA, 0, ITAB_GPA, 2 * 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
	cr_assert_eq(pop(), -ELOOP);
	assert_broken();
}

Test(virtqueue, out_of_ram_buffer)
{
	set_desc(DESC_GPA, 0, RAM_SIZE - 8, 16, 0, 0);   /* straddles the end of RAM */
	post(0);
	cr_assert_eq(pop(), -EFAULT);
	assert_broken();
}

Test(virtqueue, huge_address_wrap)
{
	set_desc(DESC_GPA, 0, ~0ULL - 4, 16, 0, 0);
	post(0);
	cr_assert_eq(pop(), -EFAULT);
	assert_broken();
}

Test(virtqueue, next_out_of_range)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, QSZ);
	post(0);
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, head_out_of_range)
{
	post(QSZ + 1);
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, avail_index_jump)
{
	avail()->idx = QSZ + 1;
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, readable_after_writable)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(DESC_GPA, 1, BUF_GPA, 16, 0, 0);
	post(0);
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, indirect_inside_indirect)
{
	set_desc(ITAB_GPA, 0, ITAB_GPA + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(DESC_GPA, 0, ITAB_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, indirect_with_next)
{
	set_desc(ITAB_GPA, 0, BUF_GPA, 16, 0, 0);
	set_desc(DESC_GPA, 0, ITAB_GPA, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	post(0);
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, indirect_bad_length)
{
	set_desc(DESC_GPA, 0, ITAB_GPA, 24, VRING_DESC_F_INDIRECT, 0);
	post(0);
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, indirect_table_too_long)
{
	set_desc(DESC_GPA, 0, ITAB_GPA, 16 * (VIRTQ_MAX_SIZE + 1), VRING_DESC_F_INDIRECT, 0);
	post(0);
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, zero_length_descriptor)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 0, 0, 0);
	post(0);
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, indirect_without_feature)
{
	pthread_mutex_lock(&vdev.lock);
	virtio_device_reset(&vdev);
	pthread_mutex_unlock(&vdev.lock);
	memset(avail(), 0, 4);
	start_device(1ULL << VIRTIO_F_VERSION_1);
	set_desc(ITAB_GPA, 0, BUF_GPA, 16, 0, 0);
	set_desc(DESC_GPA, 0, ITAB_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	post(0);
	cr_assert_eq(pop(), -EINVAL);
	assert_broken();
}

Test(virtqueue, broken_sends_config_interrupt_and_reset_recovers)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 0, 0, 0);
	post(0);
	cr_assert_lt(pop(), 0);
	cr_assert_eq(notifies, 1, "NEEDS_RESET must come with a config interrupt");
	cr_assert(atomic_load(&vdev.isr) & VIRTIO_ISR_CONFIG);

	pthread_mutex_lock(&vdev.lock);
	virtio_device_set_status(&vdev, 0);
	pthread_mutex_unlock(&vdev.lock);
	cr_assert(!vdev.broken);
	cr_assert_eq(vdev.st.status, 0);
	memset(avail(), 0, 4 + 2 * QSZ);
	memset(used(), 0, 4 + 8 * QSZ);
	start_device(ALL_FEATURES);
	set_desc(DESC_GPA, 0, BUF_GPA, 32, 0, 0);
	post(0);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(elem.out_len, 32);
}

Test(virtqueue, ring_outside_ram_breaks_on_enable)
{
	pthread_mutex_lock(&vdev.lock);
	virtio_device_reset(&vdev);
	vq->st.desc_addr = RAM_SIZE - 16;
	vq->st.avail_addr = AVAIL_GPA;
	vq->st.used_addr = USED_GPA;
	cr_assert_eq(virtq_enable(vq), -EFAULT);
	cr_assert(vdev.broken);
	pthread_mutex_unlock(&vdev.lock);
}

Test(virtqueue, bad_queue_size_breaks_on_enable)
{
	pthread_mutex_lock(&vdev.lock);
	virtio_device_reset(&vdev);
	vq->st.size = 6;
	vq->st.desc_addr = DESC_GPA;
	vq->st.avail_addr = AVAIL_GPA;
	vq->st.used_addr = USED_GPA;
	cr_assert_eq(virtq_enable(vq), -EINVAL);
	cr_assert(vdev.broken);
	pthread_mutex_unlock(&vdev.lock);
}

Test(virtqueue, features_ok_requires_version_1)
{
	pthread_mutex_lock(&vdev.lock);
	virtio_device_reset(&vdev);
	virtio_device_set_guest_features(&vdev, 0, 1u << VIRTIO_RING_F_INDIRECT_DESC);
	virtio_device_set_status(&vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
					VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert_eq(vdev.st.status & VIRTIO_CONFIG_S_FEATURES_OK, 0);
	pthread_mutex_unlock(&vdev.lock);
}

Test(virtqueue, event_idx_math)
{
	/* vring_need_event(event, new, old): did new-old cross event? */
	cr_assert(virtq_need_event(0, 1, 0));
	cr_assert(!virtq_need_event(1, 1, 0));
	cr_assert(virtq_need_event(4, 6, 2));
	cr_assert(!virtq_need_event(7, 6, 2));
	cr_assert(virtq_need_event(0xffff, 1, 0xfffe));   /* wrap-around */
	cr_assert(!virtq_need_event(2, 1, 0xfffe));
}

Test(virtqueue, event_idx_suppresses_interrupts)
{
	struct vring_avail *a = avail();

	for (int i = 0; i < 4; i++) {
		set_desc(DESC_GPA, (unsigned)i, BUF_GPA, 16, VRING_DESC_F_WRITE, 0);
		post((uint16_t)i);
	}
	a->ring[QSZ] = 2;   /* used_event: interrupt once used idx passes 2 */
	pthread_mutex_lock(&vdev.lock);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(virtq_pop(vq, &elem), 1);
		virtq_push(vq, &elem, 16);
		virtq_notify(vq);
	}
	/* First call always signals (no previous state); then only the crossing of 2. */
	cr_assert_eq(notifies, 2);
	/* avail_event published when asking for kicks. */
	cr_assert(!virtq_set_notification(vq, true));
	uint16_t ev;
	memcpy(&ev, (uint8_t *)used() + 4 + 8 * QSZ, 2);
	cr_assert_eq(ev, 4);
	post(0);
	cr_assert(virtq_set_notification(vq, true), "pending buffers must be reported");
	pthread_mutex_unlock(&vdev.lock);
}

Test(virtqueue, no_event_idx_honours_no_interrupt_flag)
{
	pthread_mutex_lock(&vdev.lock);
	virtio_device_reset(&vdev);
	pthread_mutex_unlock(&vdev.lock);
	memset(avail(), 0, 4);
	start_device(1ULL << VIRTIO_F_VERSION_1);
	avail()->flags = VRING_AVAIL_F_NO_INTERRUPT;
	set_desc(DESC_GPA, 0, BUF_GPA, 16, 0, 0);
	post(0);
	pthread_mutex_lock(&vdev.lock);
	cr_assert_eq(virtq_pop(vq, &elem), 1);
	virtq_push(vq, &elem, 0);
	virtq_notify(vq);
	cr_assert_eq(notifies, 0);
	virtq_set_notification(vq, false);
	cr_assert_eq(used()->flags, VRING_USED_F_NO_NOTIFY);
	pthread_mutex_unlock(&vdev.lock);
}

Test(virtqueue, unpop_returns_chains)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_WRITE, 0);
	set_desc(DESC_GPA, 1, BUF_GPA, 16, VRING_DESC_F_WRITE, 0);
	post(0);
	post(1);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(pop(), 1);
	pthread_mutex_lock(&vdev.lock);
	virtq_unpop(vq, 2);
	cr_assert_eq(virtq_avail_count(vq), 2);
	pthread_mutex_unlock(&vdev.lock);
	cr_assert_eq(pop(), 1);
	cr_assert_eq(elem.head, 0);
}

Test(virtqueue, iov_helpers)
{
	uint8_t a[3], b[5], out[8];
	struct iovec iov[2] = { { a, 3 }, { b, 5 } };

	cr_assert_eq(iov_from_buf(iov, 2, 2, "abcdefgh", 8), 6);
	cr_assert_eq(a[2], 'a');
	cr_assert_eq(b[4], 'f');
	cr_assert_eq(iov_to_buf(iov, 2, 2, out, 8), 6);
	cr_assert_eq(memcmp(out, "abcdef", 6), 0);
}
