# libFuzzer targets (clang, coverage + ASan/UBSan).
#   make fuzz                   every tests/fuzz/fuzz_*.c for FUZZ_SECONDS each (default 60),
#                               plus the state loader seeded with a real snapshot tree
#   make fuzz FUZZ_SECONDS=600  longer
#   make fuzz-state-short       20 s on the state loader (part of `make check` via CHECK_EXTRA)
#   make fuzz-pages-short       15 s on the destination's page receiver (likewise)
#   make fuzz-virtqueue-short   15 s on the virtqueue walker and virtio-net with a hostile driver (likewise)
# A run that takes over 10 s (-timeout) is a hang: it stops the fuzzer and lands in $(FUZZ_DIR)/ as timeout-*.
# Corpora persist in $(BUILD)/fuzz/<target>.corpus, crash and leak inputs land in $(BUILD)/fuzz/; seeds come from
# tests/fuzz/seeds/<target>/, the built test guest, and mkseed (state trees).
FUZZ_CC       ?= clang
FUZZ_SECONDS  ?= 60
FUZZ_DIR       = $(BUILD)/fuzz
FUZZ_SAN       = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS    = -std=gnu11 -g -O1 -D_GNU_SOURCE -I. -pthread $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_SRCS      = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS      = $(patsubst tests/fuzz/%.c,$(FUZZ_DIR)/%,$(FUZZ_SRCS))

# Library objects: no -Werror here, clang's warning set differs from gcc's
# and the gcc build already enforces it.
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_DIR)/libvmm.a: $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(LIB_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libvmm.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wall -Wextra -Werror -Wno-unused-parameter -fsanitize=fuzzer \
		-o $@ $^ $(LIBS)

# Seed for the state loader: a realistic tree written by the real save code.
$(FUZZ_DIR)/mkseed: tests/fuzz/mkseed.c $(BUILD)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -o $@ $^ $(LIBS)

$(FUZZ_DIR)/seed/snapshot.dtb: $(FUZZ_DIR)/mkseed
	@mkdir -p $(dir $@)
	$(FUZZ_DIR)/mkseed $(FUZZ_DIR)/seed

.PHONY: fuzz-build fuzz-state-short fuzz-pages-short
fuzz-build: $(FUZZ_BINS)

fuzz-state-short: $(FUZZ_DIR)/fuzz_state $(FUZZ_DIR)/seed/snapshot.dtb
	@mkdir -p $(FUZZ_DIR)/fuzz_state.corpus
	$(FUZZ_DIR)/fuzz_state -artifact_prefix=$(FUZZ_DIR)/ -max_total_time=20 -max_len=16384 -print_final_stats=1 \
		$(FUZZ_DIR)/fuzz_state.corpus $(FUZZ_DIR)/seed

fuzz-pages-short: $(FUZZ_DIR)/fuzz_pages
	@mkdir -p $(FUZZ_DIR)/fuzz_pages.corpus
	$(FUZZ_DIR)/fuzz_pages -artifact_prefix=$(FUZZ_DIR)/ -max_total_time=15 -max_len=20000 -print_final_stats=1 \
		$(FUZZ_DIR)/fuzz_pages.corpus tests/fuzz/seeds/fuzz_pages

fuzz-virtqueue-short: $(FUZZ_DIR)/fuzz_virtqueue
	@mkdir -p $(FUZZ_DIR)/fuzz_virtqueue.corpus
	$(FUZZ_DIR)/fuzz_virtqueue -artifact_prefix=$(FUZZ_DIR)/ -max_total_time=15 -timeout=10 -print_final_stats=1 \
		$(FUZZ_DIR)/fuzz_virtqueue.corpus

fuzz: $(FUZZ_BINS) $(FUZZ_DIR)/seed/snapshot.dtb images
	@set -e; for f in $(FUZZ_BINS); do \
		name=$$(basename $$f); mkdir -p $$f.corpus; \
		seeds=""; [ -d tests/fuzz/seeds/$$name ] && seeds=tests/fuzz/seeds/$$name; \
		[ "$$name" = fuzz_state ] && seeds="$$seeds $(FUZZ_DIR)/seed"; \
		if [ "$$name" = fuzz_boot ]; then \
			printf '\026' | cat - $(BUILD)/images/testguest.elf > $$f.corpus/testguest; fi; \
		echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
		$$f -artifact_prefix=$(FUZZ_DIR)/ -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 $$f.corpus $$seeds; \
	done

CHECK_EXTRA += fuzz-state-short fuzz-pages-short fuzz-virtqueue-short
