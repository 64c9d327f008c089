# Fuzzing the state loader (libFuzzer via clang, with ASan/UBSan).
#   make fuzz-state-short   20 s (part of `make check` via CHECK_EXTRA)
#   make fuzz               longer runs (FUZZ_SECONDS, default 300)
FUZZ_CC      ?= clang
FUZZ_DIR      = $(BUILD)/fuzz
FUZZ_SECONDS ?= 300
FUZZ_STATE_LIB = migration/state.c migration/vcpu_state.c migration/vm_state.c vmm/log.c
FUZZ_CFLAGS  = -std=gnu11 -g -O1 -D_GNU_SOURCE -I. -Wall -Wextra -Werror -Wno-unused-parameter

$(FUZZ_DIR)/fuzz_state: tests/fuzz/fuzz_state.c $(FUZZ_STATE_LIB) $(wildcard migration/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-o $@ tests/fuzz/fuzz_state.c $(FUZZ_STATE_LIB) -lfdt

$(FUZZ_DIR)/mkseed: tests/fuzz/mkseed.c $(FUZZ_STATE_LIB) $(wildcard migration/*.h vmm/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/mkseed.c $(FUZZ_STATE_LIB) -lfdt

$(FUZZ_DIR)/seed/snapshot.dtb: $(FUZZ_DIR)/mkseed
	@mkdir -p $(dir $@)
	$(FUZZ_DIR)/mkseed $(FUZZ_DIR)/seed

.PHONY: fuzz-state-short fuzz-state-long
fuzz-state-short: $(FUZZ_DIR)/fuzz_state $(FUZZ_DIR)/seed/snapshot.dtb
	@mkdir -p $(FUZZ_DIR)/corpus-state
	$(FUZZ_DIR)/fuzz_state -max_total_time=20 -max_len=16384 -print_final_stats=1 \
		$(FUZZ_DIR)/corpus-state $(FUZZ_DIR)/seed

fuzz-state-long: $(FUZZ_DIR)/fuzz_state $(FUZZ_DIR)/seed/snapshot.dtb
	@mkdir -p $(FUZZ_DIR)/corpus-state
	$(FUZZ_DIR)/fuzz_state -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -jobs=2 -workers=2 \
		-print_final_stats=1 $(FUZZ_DIR)/corpus-state $(FUZZ_DIR)/seed

fuzz: fuzz-state-long
CHECK_EXTRA += fuzz-state-short
