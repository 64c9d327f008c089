# Snapshot/restore benchmark, vmm vs QEMU (bench/snapshot/snapshot_bench.py).
#   make bench-snapshot [SNAPSHOT_BENCH_SIZES=256,1024,4096] [BENCH_RUNS=5]
BENCH_TARGETS += bench-snapshot
SNAPSHOT_BENCH_SIZES ?= 256,1024,4096
.PHONY: bench-snapshot
bench-snapshot: $(BUILD)/vmm images
	@mkdir -p $(BUILD)/bench
	python3 bench/snapshot/snapshot_bench.py --vmm $(BUILD)/vmm --guest $(BUILD)/images/testguest.elf \
		--out $(BUILD)/bench/snapshot.json --sizes $(SNAPSHOT_BENCH_SIZES) --runs $${BENCH_RUNS:-5}
