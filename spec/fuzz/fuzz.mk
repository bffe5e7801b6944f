# spec/fuzz/fuzz.mk - libFuzzer targets for the packet parsers; included by
# the top Makefile. Needs clang and libclang-rt-14-dev (make test-deps).
#   make fuzz                 each target for FUZZ_SECONDS (default 60)
#   make fuzz-smoke           each target for 20 s (CI)
# Seeds in spec/fuzz/corpus/ are only read; what the fuzzer finds goes to
# $(BUILD)/fuzz/corpus-TARGET/, crashes to $(BUILD)/fuzz/crash-*.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -Iengine/include -Iengine
FUZZ_TARGETS := $(BUILD)/fuzz/fuzz_packet $(BUILD)/fuzz/fuzz_quote \
                $(BUILD)/fuzz/fuzz_syn
TEST_TOOLS   += $(FUZZ_TARGETS)

FUZZ_SRC     := engine/packet.c engine/ext.c engine/checksum.c engine/errmsg.c

$(BUILD)/fuzz/fuzz_packet: spec/fuzz/fuzz_packet.c $(FUZZ_SRC) \
                           engine/packet.h engine/include/sonde.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) spec/fuzz/fuzz_packet.c -o $@

$(BUILD)/fuzz/fuzz_quote: spec/fuzz/fuzz_quote.c $(FUZZ_SRC) engine/quote.c \
                          engine/quote.h engine/packet.h engine/include/sonde.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) engine/quote.c spec/fuzz/fuzz_quote.c -o $@

$(BUILD)/fuzz/fuzz_syn: spec/fuzz/fuzz_syn.c $(FUZZ_SRC) engine/packet.h \
                        engine/include/sonde.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SRC) spec/fuzz/fuzz_syn.c -o $@

.PHONY: fuzz fuzz-smoke
fuzz: test-deps $(FUZZ_TARGETS)
	@for t in $(FUZZ_TARGETS); do \
	  n=$$(basename $$t); mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      -artifact_prefix=$(BUILD)/fuzz/ \
	      $(BUILD)/fuzz/corpus-$$n spec/fuzz/corpus || exit 1; \
	done

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20
