# bench-net: guest TX frames/s vs. a host program writing to the same TAP,
# plus the device-side TX microbenchmark. Writes $(BUILD)/bench/net.json.
BENCH_TARGETS += bench-net
.PHONY: bench-net
$(BUILD)/bench/net_bench: bench/net/net_bench.c $(BUILD)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -o $@ $< $(BUILD)/libvmm.a $(LIBS)

bench-net: $(BUILD)/vmm images $(BUILD)/bench/net_bench
	$(BUILD)/bench/net_bench --vmm $(BUILD)/vmm --guest $(BUILD)/images/testguest.elf \
		--out $(BUILD)/bench/net.json
