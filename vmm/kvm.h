/* Paired KVM ioctl wrappers, in the style of the KVM selftests:
 *   __kvm_ioctl(fd, REQ, arg)  returns the raw result (-1 + errno on failure);
 *   kvm_ioctl(fd, REQ, arg)    returns the result or -errno and logs the
 *                              ioctl's name and the error.
 * Library code never exits on a failed ioctl. */
#ifndef VMM_KVM_H
#define VMM_KVM_H

#include <errno.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include "vmm/log.h"

static inline int __kvm_ioctl_raw(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}

static inline int kvm_ioctl_checked(int fd, unsigned long req, const char *name, void *arg)
{
	int ret = ioctl(fd, req, arg);

	if (ret < 0) {
		int err = errno;
		log_err("kvm", "%s failed: %s", name, strerror_safe(err));
		return -err;
	}
	return ret;
}

#define __kvm_ioctl(fd, req, arg) __kvm_ioctl_raw((fd), (req), (void *)(uintptr_t)(arg))
#define kvm_ioctl(fd, req, arg)   kvm_ioctl_checked((fd), (req), #req, (void *)(uintptr_t)(arg))

#endif
