/* virtio-net back ends: TAP (/dev/net/tun, IFF_TAP|IFF_NO_PI|IFF_VNET_HDR,
 * IFF_MULTI_QUEUE for several pairs) and macvtap (the /dev/tapN character
 * device of an existing macvtap link: the "indirect mode" SR-IOV setups use,
 * with the macvtap on top of a VF or any other netdev). */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "devices/virtio_net.h"
#include "devices/virtio_net_config.h"
#include "vmm/log.h"

/* Both back ends: Ethernet frames, no packet info, the virtio-net header. */
#define TAP_FLAGS (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)

static int read_sysfs(const char *ifname, const char *attr, char *buf, size_t len)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/class/net/%s/%s", ifname, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return 0;
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

static int set_vnet_hdr_len(int fd)
{
	int len = VIRTIO_NET_HDR_LEN;

	return ioctl(fd, TUNSETVNETHDRSZ, &len) < 0 ? -errno : 0;
}

/* Attach an open TAP or macvtap fd as one queue of @ifname (TUNSETIFF
 * with @flags) and give it the 12-byte vnet header. @kind ("TAP",
 * "macvtap") names the back end in the one-line error. With @mq_optional,
 * a refused IFF_MULTI_QUEUE is retried without (older kernels' macvtap). */
static int tap_attach(int fd, const char *kind, const char *ifname, int flags, bool mq_optional,
		      char *err, size_t errlen)
{
	struct ifreq ifr = { .ifr_flags = (short)flags };
	int ret = 0;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		ifr.ifr_flags &= ~IFF_MULTI_QUEUE;
		if (mq_optional && (flags & IFF_MULTI_QUEUE))
			ret = ioctl(fd, TUNSETIFF, &ifr) < 0 ? -errno : 0;
	}
	if (ret == -EBUSY) {
		snprintf(err, errlen, "net: %s '%s' is busy (already attached to another process)", kind,
			 ifname);
		return ret;
	}
	if (ret) {
		snprintf(err, errlen, "net: cannot attach to %s '%s': %s", kind, ifname, strerror_safe(-ret));
		return ret;
	}
	ret = set_vnet_hdr_len(fd);
	if (ret)
		snprintf(err, errlen, "net: %s '%s': cannot set the vnet header size: %s", kind, ifname,
			 strerror_safe(-ret));
	return ret;
}

unsigned net_tap_probe_offloads(int fd)
{
	static const unsigned tries[] = {
		TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO,
		TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
		TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
		TUN_F_CSUM,
	};
	unsigned got = 0;

	for (unsigned i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0) {
			got = tries[i];
			break;
		}
	}
	ioctl(fd, TUNSETOFFLOAD, 0UL);
	return got;
}

int net_tap_set_offloads(int fd, unsigned tun_flags)
{
	return ioctl(fd, TUNSETOFFLOAD, (unsigned long)tun_flags) < 0 ? -errno : 0;
}

int net_tap_set_queue_active(int fd, bool active)
{
	struct ifreq ifr = { .ifr_flags = active ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE };

	return ioctl(fd, TUNSETQUEUE, &ifr) < 0 ? -errno : 0;
}

int net_tap_open(const char *ifname, unsigned *nr_queues, bool queues_given, int *fds,
		 char *err, size_t errlen)
{
	char flags_s[32];
	unsigned long tun_flags;
	bool mq;
	int ret;

	for (unsigned i = 0; i < *nr_queues; i++)
		fds[i] = -1;
	/* TUNSETIFF would silently create a missing TAP: check first. */
	if (if_nametoindex(ifname) == 0) {
		snprintf(err, errlen, "net: TAP '%s' does not exist (create it with: ip tuntap add dev %s mode tap)",
			 ifname, ifname);
		return -ENODEV;
	}
	if (read_sysfs(ifname, "tun_flags", flags_s, sizeof(flags_s))) {
		snprintf(err, errlen, "net: '%s' is not a TAP device", ifname);
		return -ENODEV;
	}
	tun_flags = strtoul(flags_s, NULL, 16);
	if (!(tun_flags & IFF_TAP)) {
		snprintf(err, errlen, "net: '%s' is a TUN (layer 3) device, not a TAP", ifname);
		return -EINVAL;
	}
	mq = tun_flags & IFF_MULTI_QUEUE;
	if (!mq && *nr_queues > 1) {
		if (queues_given) {
			snprintf(err, errlen, "net: TAP '%s' has a single queue; queues=%u needs a TAP created with multi_queue",
				 ifname, *nr_queues);
			return -EINVAL;
		}
		*nr_queues = 1;
	}
	for (unsigned i = 0; i < *nr_queues; i++) {
		fds[i] = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (fds[i] < 0) {
			ret = -errno;
			snprintf(err, errlen, "net: cannot open /dev/net/tun: %s", strerror_safe(errno));
			goto fail;
		}
		ret = tap_attach(fds[i], "TAP", ifname, TAP_FLAGS | (mq ? IFF_MULTI_QUEUE : 0), false, err,
				 errlen);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	close_fds(fds, *nr_queues);
	return ret;
}

/* Open the macvtap's character device. /dev/tapN is named after the
 * link's ifindex, which is only unique inside one network namespace: a node
 * left by another namespace's macvtap can carry the same name and other
 * device numbers. So take the numbers from sysfs (our namespace), use
 * /dev/tapN only if it matches, and otherwise open a private node made for
 * the occasion (and removed again). */
static int macvtap_open_node(const char *ifname, unsigned ifindex, char *err, size_t errlen)
{
	char path[64], attr[64], devnum[32], dir[] = "/tmp/vmm-macvtap-XXXXXX";
	unsigned maj, min;
	struct stat st;
	int fd = -1;

	snprintf(path, sizeof(path), "/dev/tap%u", ifindex);
	snprintf(attr, sizeof(attr), "macvtap/tap%u/dev", ifindex);
	if (read_sysfs(ifname, attr, devnum, sizeof(devnum)) || sscanf(devnum, "%u:%u", &maj, &min) != 2) {
		errno = ENOENT;
		goto out;
	}
	if (stat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(maj, min)) {
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		goto out;
	}
	if (!mkdtemp(dir))
		goto out;
	snprintf(path, sizeof(path), "%s/tap%u", dir, ifindex);
	if (mknod(path, S_IFCHR | 0600, makedev(maj, min)) == 0) {
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		unlink(path);
	}
	rmdir(dir);
out:
	if (fd < 0)
		snprintf(err, errlen, "net: cannot open the macvtap device of '%s' (%s): %s", ifname,
			 path, strerror_safe(errno));
	return fd < 0 ? -errno : fd;
}

int net_macvtap_open(const char *ifname, unsigned *nr_queues, bool queues_given, int *fds,
		     uint8_t mac[6], char *err, size_t errlen)
{
	char buf[64];
	unsigned ifindex;
	int ret;

	for (unsigned i = 0; i < *nr_queues; i++)
		fds[i] = -1;
	if (if_nametoindex(ifname) == 0) {
		snprintf(err, errlen, "net: macvtap link '%s' does not exist", ifname);
		return -ENODEV;
	}
	if (read_sysfs(ifname, "ifindex", buf, sizeof(buf)) || sscanf(buf, "%u", &ifindex) != 1) {
		snprintf(err, errlen, "net: cannot read the ifindex of '%s'", ifname);
		return -ENODEV;
	}
	snprintf(buf, sizeof(buf), "macvtap/tap%u/dev", ifindex);
	{
		char tmp[32];

		if (read_sysfs(ifname, buf, tmp, sizeof(tmp))) {
			snprintf(err, errlen, "net: '%s' is not a macvtap link", ifname);
			return -EINVAL;
		}
	}
	if (read_sysfs(ifname, "address", buf, sizeof(buf)) == 0 && net_parse_mac(buf, mac) != 0)
		memset(mac, 0, 6);
	for (unsigned i = 0; i < *nr_queues; i++) {
		ret = macvtap_open_node(ifname, ifindex, err, errlen);
		if (ret < 0) {
			/* A macvtap caps its queues; fall back to fewer unless asked for N. */
			if (i > 0 && !queues_given) {
				*nr_queues = i;
				return 0;
			}
			goto fail;
		}
		fds[i] = ret;
		ret = tap_attach(fds[i], "macvtap", ifname,
				 TAP_FLAGS | (*nr_queues > 1 ? IFF_MULTI_QUEUE : 0), true, err, errlen);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	close_fds(fds, *nr_queues);
	return ret;
}

int net_backend_check_fd(int fd, const char *ifname, char *err, size_t errlen)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	/* TUNGETIFF answers on TAP and macvtap queues alike (name = the link). */
	if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
		snprintf(err, errlen, "net: the fd handed over for '%s' is not a TAP/macvtap queue: %s", ifname,
			 strerror_safe(errno));
		return -EINVAL;
	}
	ifr.ifr_name[IFNAMSIZ - 1] = '\0';
	if (strcmp(ifr.ifr_name, ifname)) {
		snprintf(err, errlen, "net: the fd handed over for '%s' belongs to '%s'", ifname, ifr.ifr_name);
		return -EINVAL;
	}
	if (!(ifr.ifr_flags & IFF_VNET_HDR) || !(ifr.ifr_flags & IFF_TAP)) {
		snprintf(err, errlen, "net: the fd handed over for '%s' is not a TAP with a vnet header", ifname);
		return -EINVAL;
	}
	return 0;
}
