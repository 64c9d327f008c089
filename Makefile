# vmm: a minimal KVM/VFIO virtual machine monitor.
#   make deps    install the Debian packages the project needs (idempotent)
#   make         build build/vmm and the test guests under build/images/
#   make run     deps + build + boot the default test guest (test=hello)
#   make test    deps + build + unit and integration tests, then the same under ASan/UBSan
#   make bench   benchmarks side by side with QEMU; JSON under build/bench/
#   make fuzz    longer fuzzing runs

CC      ?= gcc
BUILD   ?= build
CFLAGS_COMMON = -std=gnu11 -g -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -I. -pthread -MMD -MP
CFLAGS  ?= -O2
# libfdt and liburing are linked statically: each shared library costs the
# loader about 40 us at every start (open, map, relocate), and `vmm run` start-up
# is benchmarked (bench/boot). libcjson has no static archive in Debian.
LIBS    = -Wl,--as-needed -Wl,-Bstatic -lfdt -luring -Wl,-Bdynamic -lcjson -lseccomp -lpthread -ldl
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# `make` alone builds everything (the flavour rules below come first).
.DEFAULT_GOAL := all

LIB_DIRS = vmm devices vfio migration api
LIB_SRCS = $(filter-out vmm/main.c,$(wildcard $(addsuffix /*.c,$(LIB_DIRS))))
MAIN_SRC = vmm/main.c
UNIT_SRCS = $(wildcard tests/unit/*.c)
INTEG_SRCS = $(wildcard tests/integration/*.c)

# Two build flavours share one set of rules: $(BUILD) (optimized) and $(BUILD)/asan.
define flavour
$(1)/obj/%.o: %.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_COMMON) $(2) -c $$< -o $$@
$(1)/libvmm.a: $$(patsubst %.c,$(1)/obj/%.o,$$(LIB_SRCS))
	@rm -f $$@
	ar rcs $$@ $$^
$(1)/vmm: $(1)/obj/vmm/main.o $(1)/libvmm.a
	$$(CC) $(2) -pthread -o $$@ $$^ $$(LIBS)
$(1)/tests/unit: $$(patsubst %.c,$(1)/obj/%.o,$$(UNIT_SRCS)) $(1)/libvmm.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) -pthread -o $$@ $$^ -lcriterion $$(LIBS)
$(1)/tests/integration: $$(patsubst %.c,$(1)/obj/%.o,$$(INTEG_SRCS)) $(1)/libvmm.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) -pthread -o $$@ $$^ -lcriterion $$(LIBS)
endef

$(eval $(call flavour,$(BUILD),$(CFLAGS)))
$(eval $(call flavour,$(BUILD)/asan,-O1 $(SAN_FLAGS)))

.PHONY: all deps run test check check-openapi check-unit check-integration check-asan bench fuzz clean images
all: $(BUILD)/vmm images

# Test guests and test device servers have their own fragments.
include images/testguest/guest.mk
-include tests/vfio-user-nic/server.mk
-include bench/bench.mk
-include $(wildcard bench/*/*.mk)
-include tests/fuzz/fuzz.mk

deps:
	@bash .ci/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/vmm run --kernel $(BUILD)/images/testguest.elf --cmdline "test=hello"

TEST_BINS = $(BUILD)/vmm $(BUILD)/tests/unit $(BUILD)/tests/integration images $(TEST_EXTRA)

check-unit: $(BUILD)/tests/unit
	$(BUILD)/tests/unit --jobs 2

check-integration: $(BUILD)/vmm $(BUILD)/tests/integration images $(TEST_EXTRA)
	VMM_BIN=$(BUILD)/vmm VMM_IMAGES=$(BUILD)/images $(BUILD)/tests/integration --jobs 2

# The same suites against the ASan/UBSan build: unit tests in-process, and the
# integration tests driving the sanitized vmm binary.
check-asan: $(BUILD)/asan/vmm $(BUILD)/asan/tests/unit $(BUILD)/tests/integration images $(TEST_EXTRA)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		$(BUILD)/asan/tests/unit --jobs 2
	ASAN_OPTIONS=detect_leaks=1 VMM_SYNC_TEARDOWN=1 VMM_BIN=$(BUILD)/asan/vmm VMM_IMAGES=$(BUILD)/images VMM_ASAN=1 \
		$(BUILD)/tests/integration --jobs 2

# The API description must stay valid OpenAPI-shaped YAML with one path per action.
check-openapi:
	/usr/bin/python3 -c 'import sys, yaml; d = yaml.safe_load(open("api/openapi.yaml")); \
		assert d["openapi"].startswith("3."), "not OpenAPI 3"; \
		print("openapi.yaml: %d paths" % len(d["paths"]))'

check: check-openapi check-unit check-integration check-asan $(CHECK_EXTRA)

test: deps
	@$(MAKE) --no-print-directory check

# Benchmark fragments append their targets to BENCH_TARGETS.
bench: all $(BENCH_TARGETS)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
