# The test VF device server (a vfio-user server), its own binary.
VFNIC_SRCS = $(wildcard tests/vfio-user-nic/*.c)

$(BUILD)/tests/vfio-user-nic: $(patsubst %.c,$(BUILD)/obj/%.o,$(VFNIC_SRCS)) $(BUILD)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) -pthread -o $@ $^ $(LIBS)

TEST_EXTRA += $(BUILD)/tests/vfio-user-nic
