# engine/fuzz/fuzz.mk - libFuzzer targets for the packet parser; included by
# the top Makefile. Needs clang and libclang-rt-14-dev.
#   make fuzz                 each target for FUZZ_SECONDS (default 60)
#   make fuzz-smoke           each target for 20 s (CI)
# Seeds in engine/fuzz/corpus/ are only read; what the fuzzer finds goes to
# $(BUILD)/fuzz/corpus-TARGET/, crashes to $(BUILD)/fuzz/crash-*.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -Iengine/include -Iengine
FUZZ_TARGETS := $(BUILD)/fuzz/fuzz_packet

FUZZ_SRC     := engine/packet.c engine/checksum.c engine/errmsg.c

$(BUILD)/fuzz/fuzz_packet: engine/fuzz/fuzz_packet.c $(FUZZ_SRC) \
                           engine/packet.h engine/include/sonde.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) engine/fuzz/fuzz_packet.c -o $@

.PHONY: fuzz fuzz-smoke
fuzz: deps $(FUZZ_TARGETS)
	@for t in $(FUZZ_TARGETS); do \
	  n=$$(basename $$t); mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      -artifact_prefix=$(BUILD)/fuzz/ \
	      $(BUILD)/fuzz/corpus-$$n engine/fuzz/corpus || exit 1; \
	done

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20
