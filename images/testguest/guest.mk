# The freestanding test guest: a PVH ELF linked at 1 MiB.
# Flags keep to instructions KVM's emulator implements (see shared/ENVIRONMENT.md).
GUEST_CC     = gcc
GUEST_CFLAGS = -std=gnu11 -ffreestanding -nostdlib -fno-pic -fno-pie -mno-red-zone \
	-mgeneral-regs-only -mno-sse -mno-mmx -mno-popcnt -fno-stack-protector \
	-fno-asynchronous-unwind-tables -mcmodel=small -fno-builtin -fno-tree-loop-distribute-patterns -O2 -g -Wall -Wextra -Werror \
	-Wno-unused-parameter -Iimages/testguest -MMD -MP
GUEST_SRCS   = $(wildcard images/testguest/*.c images/testguest/*.S)
GUEST_OBJS   = $(patsubst %,$(BUILD)/images/obj/%.o,$(GUEST_SRCS))

images: $(BUILD)/images/testguest.elf

$(BUILD)/images/obj/%.c.o: %.c
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

$(BUILD)/images/obj/%.S.o: %.S
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -c $< -o $@

$(BUILD)/images/testguest.elf: $(GUEST_OBJS) images/testguest/link.ld
	@mkdir -p $(dir $@)
	$(GUEST_CC) $(GUEST_CFLAGS) -static -Wl,--build-id=none -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -T images/testguest/link.ld -o $@ $(GUEST_OBJS) -lgcc
