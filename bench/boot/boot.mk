BENCH_TARGETS += bench-boot
.PHONY: bench-boot
bench-boot: $(BUILD)/vmm images
	@mkdir -p $(BUILD)/bench
	python3 bench/boot/boot_bench.py --vmm $(BUILD)/vmm --guest $(BUILD)/images/testguest.elf \
		--out $(BUILD)/bench/boot.json --runs $${BENCH_RUNS:-20}
