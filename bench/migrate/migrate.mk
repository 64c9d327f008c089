BENCH_TARGETS += bench-migrate
.PHONY: bench-migrate
bench-migrate: $(BUILD)/vmm images
	@mkdir -p $(BUILD)/bench
	python3 bench/migrate/migrate_bench.py --vmm $(BUILD)/vmm --guest $(abspath $(BUILD)/images/testguest.elf) \
		--out $(BUILD)/bench/migrate.json

# The page stream without a VM (needs no /dev/kvm): lane sender and stream
# receiver against a plain socket copy. Writes $(BUILD)/bench/migrate_stream.json.
BENCH_TARGETS += bench-migrate-stream
.PHONY: bench-migrate-stream
$(BUILD)/bench/stream_bench: bench/migrate/stream_bench.c $(BUILD)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -o $@ $< $(BUILD)/libvmm.a $(LIBS)

bench-migrate-stream: $(BUILD)/bench/stream_bench
	$(BUILD)/bench/stream_bench --out $(BUILD)/bench/migrate_stream.json
