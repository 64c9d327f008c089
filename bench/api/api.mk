# API benchmark: request latency over the UNIX socket and serve start-up time.
BENCH_TARGETS += bench-api
.PHONY: bench-api
$(BUILD)/bench/api-bench: bench/api/api_bench.c $(BUILD)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -o $@ $< $(BUILD)/libvmm.a $(LIBS)

bench-api: $(BUILD)/vmm $(BUILD)/bench/api-bench
	@mkdir -p $(BUILD)/bench
	$(BUILD)/bench/api-bench --vmm $(BUILD)/vmm --out $(BUILD)/bench/api.json \
		--requests $${BENCH_API_REQUESTS:-2000} --starts $${BENCH_API_STARTS:-20}
