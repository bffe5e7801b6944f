# spec/netsim/netsim.mk - sonde-netsim, the TUN network simulator of the
# lab specs (routers with delays, loss, rate limits and MPLS labels, written
# as JSON scenarios); included by the top Makefile, built with the test
# tools (make test-tools). Needs libjansson-dev besides libuv.
#   $(BUILD)/sonde-netsim --help

NETSIM_SRC    := $(wildcard spec/netsim/*.c)
NETSIM_OBJ    := $(NETSIM_SRC:%.c=$(BUILD)/%.o)
JANSSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS   := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)

TEST_TOOLS += $(BUILD)/sonde-netsim

$(BUILD)/spec/netsim/%.o: spec/netsim/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(JANSSON_CFLAGS) -c -o $@ $<

# The engine's parsers, checksums and IP header come from libsonde.a: one
# packet library for the probes and the replies.
$(BUILD)/sonde-netsim: $(NETSIM_OBJ) $(BUILD)/libsonde.a
	$(CC) -o $@ $(NETSIM_OBJ) $(BUILD)/libsonde.a $(ALL_LDFLAGS) \
	  $(JANSSON_LIBS) $(UV_LIBS) -lm
