# engine/netsim/netsim.mk - sonde-netsim, the TUN network simulator of the
# lab (issue 9); included by the top Makefile, built by `make all`.
# Needs libjansson-dev (scenario files are JSON) besides libuv.
#   build/sonde-netsim --help

NETSIM_SRC    := $(wildcard engine/netsim/*.c)
NETSIM_OBJ    := $(NETSIM_SRC:%.c=$(BUILD)/%.o)
NETSIM_HDR    := $(wildcard engine/netsim/*.h) engine/packet.h \
                 engine/include/sonde.h
JANSSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS   := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)

EXTRA_TARGETS += $(BUILD)/sonde-netsim

$(BUILD)/engine/netsim/%.o: engine/netsim/%.c $(NETSIM_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(JANSSON_CFLAGS) -c -o $@ $<

# The engine's packet code comes from libsonde.a: one packet library.
$(BUILD)/sonde-netsim: $(NETSIM_OBJ) $(BUILD)/libsonde.a
	$(CC) -o $@ $(NETSIM_OBJ) $(BUILD)/libsonde.a $(ALL_LDFLAGS) \
	  $(JANSSON_LIBS) $(UV_LIBS) -lm
