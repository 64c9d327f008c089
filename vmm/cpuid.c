/* CPUID for each vCPU: what KVM supports on this host, with the hypervisor
 * bit and leaves set and the topology (APIC ids) made consistent with the
 * MADT the guest will read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/cpuid.h"
#include "vmm/kvm.h"

int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **out)
{
	for (unsigned nent = 128; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		int ret;

		if (!c)
			return -ENOMEM;
		c->nent = nent;
		ret = __kvm_ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c);
		if (ret == 0) {
			*out = c;
			return 0;
		}
		ret = -errno;
		free(c);
		if (ret != -E2BIG) {
			log_err("kvm", "KVM_GET_SUPPORTED_CPUID failed: %s", strerror_safe(-ret));
			return ret;
		}
	}
	return -E2BIG;
}

static unsigned cpuid_order(unsigned n)
{
	unsigned shift = 0;

	while ((1u << shift) < n)
		shift++;
	return shift;
}

void cpuid_patch_for_vcpu(struct kvm_cpuid2 *c, unsigned apic_id, unsigned nr_cpus)
{
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 0x1:
			/* EBX[31:24] initial APIC id, [23:16] logical processors per package. */
			e->ebx = (e->ebx & 0x0000ffff) | (apic_id << 24) | ((nr_cpus & 0xff) << 16);
			e->ecx |= CPUID_1_ECX_HYPERVISOR;
			if (nr_cpus > 1)
				e->edx |= CPUID_1_EDX_HTT;
			break;
		case 0xb:
		case 0x1f:
			/* Extended topology (Intel SDM Vol. 2A, CPUID leaf 0BH): one thread
			 * per core, all vCPUs cores of one package. */
			e->edx = apic_id;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;       /* level type SMT */
			} else if (e->index == 1) {
				e->eax = cpuid_order(nr_cpus);
				e->ebx = nr_cpus;
				e->ecx = (2u << 8) | 1;       /* level type core */
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x40000000:
			/* KVM paravirt signature; max hypervisor leaf. */
			e->eax = 0x40000001;
			memcpy(&e->ebx, "KVMK", 4);
			memcpy(&e->ecx, "VMKV", 4);
			memcpy(&e->edx, "M\0\0\0", 4);
			break;
		default:
			break;
		}
	}
}
