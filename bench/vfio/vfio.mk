# VF passthrough benchmarks: frames/s through the VF (vfio-user test NIC) vs
# virtio-net in the same run (both driven by the test guest, and the VF path
# host-side without a guest), and DMA map latency of shadowed mappings
# (MAP request -> device can use it). Writes $(BUILD)/bench/vfio.json.
BENCH_TARGETS += bench-vfio
.PHONY: bench-vfio
$(BUILD)/bench/vfio_bench: bench/vfio/vfio_bench.c $(BUILD)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -o $@ $< $(BUILD)/libvmm.a $(LIBS)

bench-vfio: $(BUILD)/bench/vfio_bench $(BUILD)/vmm $(BUILD)/tests/vfio-user-nic images
	$(BUILD)/bench/vfio_bench --out $(BUILD)/bench/vfio.json --vmm $(BUILD)/vmm \
		--server $(BUILD)/tests/vfio-user-nic --kernel $(BUILD)/images/testguest.elf
