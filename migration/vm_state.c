/* In-kernel irqchip, PIT and kvmclock state (Documentation/virt/kvm/api.rst
 * §4.26 KVM_GET_IRQCHIP, §4.73 KVM_GET_PIT2, §4.45 KVM_GET_CLOCK). */
#include "migration/vm_state.h"

#include <errno.h>
#include <string.h>

#include "migration/state.h"
#include "vmm/kvm.h"

static int read_chip(int vm_fd, unsigned id, struct kvm_irqchip *chip)
{
	memset(chip, 0, sizeof(*chip));
	chip->chip_id = id;
	return kvm_ioctl(vm_fd, KVM_GET_IRQCHIP, chip);
}

int vm_kstate_read(int vm_fd, bool irqchip, bool pit, struct vm_kstate *s)
{
	struct kvm_irqchip chip;
	int ret;

	memset(s, 0, sizeof(*s));
	if (irqchip) {
		s->has_irqchip = true;
		if ((ret = read_chip(vm_fd, KVM_IRQCHIP_PIC_MASTER, &chip)) < 0)
			return ret;
		s->pic[0] = chip.chip.pic;
		if ((ret = read_chip(vm_fd, KVM_IRQCHIP_PIC_SLAVE, &chip)) < 0)
			return ret;
		s->pic[1] = chip.chip.pic;
		if ((ret = read_chip(vm_fd, KVM_IRQCHIP_IOAPIC, &chip)) < 0)
			return ret;
		s->ioapic = chip.chip.ioapic;
	}
	if (pit) {
		s->has_pit = true;
		if ((ret = kvm_ioctl(vm_fd, KVM_GET_PIT2, &s->pit)) < 0)
			return ret;
	}
	ret = kvm_ioctl(vm_fd, KVM_GET_CLOCK, &s->clock);
	return ret < 0 ? ret : 0;
}

int vm_kstate_save(const struct vm_kstate *s, struct state_node *root)
{
	struct state_node *n;
	int ret = 0;

	if (s->has_irqchip) {
		n = state_add_node(root, "irqchip", VM_STATE_VERSION);
		if (!n)
			return -EINVAL;
		ret |= state_put_bytes(n, "pic-master", &s->pic[0], sizeof(s->pic[0]));
		ret |= state_put_bytes(n, "pic-slave", &s->pic[1], sizeof(s->pic[1]));
		ret |= state_put_bytes(n, "ioapic", &s->ioapic, sizeof(s->ioapic));
	}
	if (s->has_pit) {
		n = state_add_node(root, "pit", VM_STATE_VERSION);
		if (!n)
			return -EINVAL;
		ret |= state_put_bytes(n, "state", &s->pit, sizeof(s->pit));
	}
	n = state_add_node(root, "clock", VM_STATE_VERSION);
	if (!n)
		return -EINVAL;
	ret |= state_put_u64(n, "clock", s->clock.clock);
	ret |= state_put_u32(n, "flags", s->clock.flags);
	return ret ? -EINVAL : 0;
}

int vm_kstate_parse(const struct state_node *root, struct vm_kstate *s)
{
	struct state_node n;
	uint64_t clock;

	memset(s, 0, sizeof(*s));
	if (state_child_opt(root, "irqchip", &n) == 0) {
		s->has_irqchip = true;
		if (state_node_version(&n, 1, VM_STATE_VERSION, NULL) ||
		    state_get_bytes(&n, "pic-master", &s->pic[0], sizeof(s->pic[0])) ||
		    state_get_bytes(&n, "pic-slave", &s->pic[1], sizeof(s->pic[1])) ||
		    state_get_bytes(&n, "ioapic", &s->ioapic, sizeof(s->ioapic)))
			return -EINVAL;
	}
	if (state_child_opt(root, "pit", &n) == 0) {
		s->has_pit = true;
		if (state_node_version(&n, 1, VM_STATE_VERSION, NULL) ||
		    state_get_bytes(&n, "state", &s->pit, sizeof(s->pit)))
			return -EINVAL;
	}
	if (state_child(root, "clock", &n) || state_node_version(&n, 1, VM_STATE_VERSION, NULL) ||
	    state_get_u64(&n, "clock", &clock) || state_get_u32(&n, "flags", &s->clock.flags))
		return -EINVAL;
	s->clock.clock = clock;
	return 0;
}

static int write_chip(int vm_fd, unsigned id, const void *data, size_t len)
{
	struct kvm_irqchip chip = { .chip_id = id };

	memcpy(&chip.chip, data, len);
	return kvm_ioctl(vm_fd, KVM_SET_IRQCHIP, &chip);
}

int vm_kstate_write(int vm_fd, const struct vm_kstate *s)
{
	/* Only the value: no KVM_CLOCK_REALTIME, so the guest does not see the
	 * wall-clock time the snapshot spent on disk as a jump. */
	struct kvm_clock_data clock = { .clock = s->clock.clock };
	int ret;

	if (s->has_irqchip) {
		if ((ret = write_chip(vm_fd, KVM_IRQCHIP_PIC_MASTER, &s->pic[0], sizeof(s->pic[0]))) < 0 ||
		    (ret = write_chip(vm_fd, KVM_IRQCHIP_PIC_SLAVE, &s->pic[1], sizeof(s->pic[1]))) < 0 ||
		    (ret = write_chip(vm_fd, KVM_IRQCHIP_IOAPIC, &s->ioapic, sizeof(s->ioapic))) < 0)
			return ret;
	}
	if (s->has_pit && (ret = kvm_ioctl(vm_fd, KVM_SET_PIT2, &s->pit)) < 0)
		return ret;
	ret = kvm_ioctl(vm_fd, KVM_SET_CLOCK, &clock);
	return ret < 0 ? ret : 0;
}
