# virtio-iommu benchmarks (device side, no guest): translation cost on the
# virtio TX path with the IOMMU on vs off, raw translation, MAP/UNMAP request
# throughput. Writes $(BUILD)/bench/iommu.json.
BENCH_TARGETS += bench-iommu
.PHONY: bench-iommu
$(BUILD)/bench/iommu_bench: bench/iommu/iommu_bench.c $(BUILD)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS) -o $@ $< $(BUILD)/libvmm.a $(LIBS)

bench-iommu: $(BUILD)/bench/iommu_bench
	$(BUILD)/bench/iommu_bench --out $(BUILD)/bench/iommu.json
