BENCH_TARGETS += bench-migrate
.PHONY: bench-migrate
bench-migrate: $(BUILD)/vmm images
	@mkdir -p $(BUILD)/bench
	python3 bench/migrate/migrate_bench.py --vmm $(BUILD)/vmm --guest $(abspath $(BUILD)/images/testguest.elf) \
		--out $(BUILD)/bench/migrate.json
