# libFuzzer targets: every tests/fuzz/fuzz_*.c becomes $(BUILD)/fuzz/fuzz_<name>,
# linked against the library sources rebuilt with clang, coverage and ASan/UBSan.
#   make fuzz                      run each target for FUZZ_SECONDS (default 60)
#   make fuzz FUZZ_SECONDS=600     longer
# Corpora persist in $(BUILD)/fuzz/<target>.corpus; seeds come from
# tests/fuzz/seeds/<target>/ and the built test guest.
FUZZ_CC       ?= clang
FUZZ_SECONDS  ?= 60
FUZZ_SAN       = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS    = -std=gnu11 -g -O1 -D_GNU_SOURCE -I. -pthread $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_SRCS      = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS      = $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))

# Library objects: no -Werror here, clang's warning set differs from gcc's
# and the gcc build already enforces it.
$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(BUILD)/fuzz/libvmm.a: $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(LIB_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(BUILD)/fuzz/libvmm.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wall -Wextra -Werror -Wno-unused-parameter -fsanitize=fuzzer \
		-o $@ $^ $(LIBS)

.PHONY: fuzz-build
fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS) images
	@set -e; for f in $(FUZZ_BINS); do \
		name=$$(basename $$f); mkdir -p $$f.corpus; \
		seeds=""; [ -d tests/fuzz/seeds/$$name ] && seeds=tests/fuzz/seeds/$$name; \
		if [ "$$name" = fuzz_boot ]; then \
			printf '\026' | cat - $(BUILD)/images/testguest.elf > $$f.corpus/testguest; fi; \
		echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$f.corpus $$seeds; \
	done
