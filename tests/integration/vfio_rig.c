/* The vfio-user test rig (see vfio_rig.h). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "tests/integration/harness.h"
#include "tests/integration/vfio_rig.h"
#include "vfio/vfio_user.h"

char *vf_server_path(void)
{
	char *p = getenv("VFIO_USER_NIC");
	char buf[512];

	if (p)
		return strdup(p);
	/* $VMM_IMAGES is <build>/images; the server is <build>/tests/vfio-user-nic. */
	snprintf(buf, sizeof(buf), "%s", harness_images_dir());
	char *slash = strrchr(buf, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(buf, sizeof(buf), ".");
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "/tests/vfio-user-nic");
	return strdup(buf);
}

static pid_t spawn_server(int fd, const char *const extra[])
{
	char *path = vf_server_path();
	pid_t pid;

	cr_assert(access(path, X_OK) == 0, "test server %s missing (make %s)", path, path);
	pid = harness_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char fdarg[16];
		const char *argv[12] = { path, "--fd", fdarg };
		int n = 3;

		snprintf(fdarg, sizeof(fdarg), "%d", fd);
		for (int i = 0; extra && extra[i] && n < 11; i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		execv(path, (char *const *)argv);
		_exit(127);
	}
	free(path);
	return pid;
}

int rig_start(struct rig *r, const char *const extra[])
{
	int sv[2];

	memset(r, 0, sizeof(*r));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	/* The server's end must survive exec; ours must not leak into it. */
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	r->pid = spawn_server(sv[1], extra);
	close(sv[1]);
	cr_assert_eq(mem_init(&r->mem, RAM_SIZE), 0);
	struct vfio_user_opts o = { .fd = sv[0], .mem = &r->mem, .timeout_ms = 3000,
				    .name = "test-vfu" };
	return vfio_user_open(&o, &r->be);
}

void rig_stop(struct rig *r)
{
	int st;

	vfio_be_destroy(r->be);
	r->be = NULL;
	if (r->pid > 0) {
		/* Closing the socket ends the server; make sure. */
		for (int i = 0; i < 100 && waitpid(r->pid, &st, WNOHANG) == 0; i++)
			usleep(10000);
		kill(r->pid, SIGKILL);
		waitpid(r->pid, &st, 0);
	}
	for (int i = 0; i < VFNIC_NR_VECTORS; i++)
		if (r->efd[i] > 0)
			close(r->efd[i]);
	mem_destroy(&r->mem);
}

uint32_t reg_read(struct rig *r, uint32_t off)
{
	uint32_t v = 0xdeadbeef;

	cr_assert_eq(vfio_be_region_read(r->be, VFIO_PCI_BAR0_REGION_INDEX, off, &v, 4), 0);
	return v;
}

void reg_write(struct rig *r, uint32_t off, uint32_t v)
{
	cr_assert_eq(vfio_be_region_write(r->be, VFIO_PCI_BAR0_REGION_INDEX, off, &v, 4), 0);
}

void map_all_ram(struct rig *r)
{
	struct vfio_dma d = { .iova = 0, .size = RAM_SIZE, .hva = r->mem.base, .fd = r->mem.fd,
			      .fd_offset = 0, .gpa = 0, .read = true, .write = true };
	cr_assert_eq(r->be->ops->dma_map(r->be, &d), 0);
}

void setup_irqs(struct rig *r)
{
	for (int i = 0; i < VFNIC_NR_VECTORS; i++) {
		r->efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		cr_assert_geq(r->efd[i], 0);
	}
	cr_assert_eq(r->be->ops->set_irqs(r->be, VFIO_PCI_MSIX_IRQ_INDEX, 0, VFNIC_NR_VECTORS,
					  VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
					  r->efd),
		     0);
}

uint64_t irq_count(struct rig *r, int v)
{
	uint64_t n = 0;

	if (read(r->efd[v], &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}


void put_desc(struct rig *r, uint64_t ring, unsigned i, uint64_t addr, uint16_t len)
{
	struct desc d = { .addr = addr, .len = len };
	cr_assert_eq(mem_write(&r->mem, ring + i * sizeof(d), &d, sizeof(d)), 0);
}

struct desc get_desc(struct rig *r, uint64_t ring, unsigned i)
{
	struct desc d;
	cr_assert_eq(mem_read(&r->mem, ring + i * sizeof(d), &d, sizeof(d)), 0);
	return d;
}

void program_rings(struct rig *r, unsigned rx_posted)
{
	reg_write(r, VFNIC_REG_TX_RING_LO, TX_RING);
	reg_write(r, VFNIC_REG_TX_RING_HI, 0);
	reg_write(r, VFNIC_REG_TX_SIZE, RING_N);
	reg_write(r, VFNIC_REG_RX_RING_LO, RX_RING);
	reg_write(r, VFNIC_REG_RX_RING_HI, 0);
	reg_write(r, VFNIC_REG_RX_SIZE, RING_N);
	for (unsigned i = 0; i < rx_posted; i++)
		put_desc(r, RX_RING, i, RX_BUFS + i * 2048, 2048);
	reg_write(r, VFNIC_REG_RX_TAIL, rx_posted);
	reg_write(r, VFNIC_REG_CTRL, VFNIC_CTRL_ENABLE);
}
