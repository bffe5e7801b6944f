# sonde - top-level build. `make demo` and `make test` are all a newcomer runs.

.DEFAULT_GOAL := all

PREFIX   ?= /usr/local
BUILD    ?= build
CC       ?= cc
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter
ifeq ($(CI),true)
WARN     += -Werror
endif
LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
LUAJIT_LIBS   := $(shell pkg-config --libs luajit 2>/dev/null || echo -lluajit-5.1)
UV_LIBS       := $(shell pkg-config --libs libuv 2>/dev/null || echo -luv)
MHD_LIBS      := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)
CARES_LIBS    := $(shell pkg-config --libs libcares 2>/dev/null || echo -lcares)
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) \
              -Iengine/include -Iengine
ALL_LDFLAGS := $(LDFLAGS) $(EXTRA_LDFLAGS)

# Debian packages that building, testing and the demo need.
DEPS := build-essential pkg-config luajit libluajit-5.1-dev libuv1-dev \
        lua-busted lua-cjson iproute2 nftables procps python3-jsonschema \
        clang libclang-rt-14-dev iputils-ping libcap2-bin util-linux valgrind \
        libjansson-dev scamper libmicrohttpd-dev prometheus curl \
        libc-ares-dev dnsmasq-base

ENGINE_SRC := $(wildcard engine/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
# sonde.core is every file of bindings/ but the executable's own two.
MAIN_SRC   := bindings/main.c bindings/sandbox.c
CORE_SRC   := $(filter-out $(MAIN_SRC),$(wildcard bindings/*.c))
CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ   := $(MAIN_SRC:%.c=$(BUILD)/%.o)
TOOLS      := $(BUILD)/labpeer $(BUILD)/forge

-include engine/fuzz/fuzz.mk
# Optional parts add their own targets to EXTRA_TARGETS (e.g. sonde-netsim).
EXTRA_TARGETS :=
-include engine/netsim/netsim.mk
-include bindings/install.mk

.PHONY: all deps demo test check bench clean
all: $(BUILD)/libsonde.a $(BUILD)/libsonde.so $(BUILD)/lua/sonde/core.so \
     $(BUILD)/sonde $(TOOLS) $(EXTRA_TARGETS)

# Installs only what is missing: one `apt-get update`, then `apt-get install -y`.
deps:
	@missing=""; for p in $(DEPS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: need root to install:$$missing" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BUILD)/%.o: %.c $(wildcard engine/*.h engine/include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The installed executable's fallback scripts directory follows PREFIX.
$(BUILD)/bindings/main.o: BINDING_DEFS := \
  -DSONDE_SCRIPTS_DIR='"$(PREFIX)/share/sonde/scripts"'

$(BUILD)/bindings/%.o: bindings/%.c $(wildcard engine/include/*.h bindings/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LUAJIT_CFLAGS) $(BINDING_DEFS) -c -o $@ $<

$(BUILD)/libsonde.a: $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libsonde.so: $(ENGINE_OBJ)
	$(CC) -shared -Wl,-soname,libsonde.so.0 -o $@ $^ $(ALL_LDFLAGS) $(UV_LIBS)

$(BUILD)/lua/sonde/core.so: $(CORE_OBJ) $(BUILD)/libsonde.a
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(CORE_OBJ) $(BUILD)/libsonde.a $(ALL_LDFLAGS) $(UV_LIBS) $(MHD_LIBS) $(CARES_LIBS) -lpthread

$(BUILD)/sonde: $(MAIN_OBJ) $(CORE_OBJ) $(BUILD)/libsonde.a
	$(CC) -o $@ $(MAIN_OBJ) $(CORE_OBJ) $(BUILD)/libsonde.a $(ALL_LDFLAGS) $(LUAJIT_LIBS) $(UV_LIBS) $(MHD_LIBS) $(CARES_LIBS) -lpthread -lm -Wl,-E

$(BUILD)/labpeer: spec/tools/labpeer.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS)

$(BUILD)/forge: spec/tools/forge.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS)

# ASan + UBSan: everything rebuilt in $(CHECK_BUILD), every spec run on it.
CHECK_BUILD ?= build-check
SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer
check: deps
	@$(MAKE) --no-print-directory BUILD=$(CHECK_BUILD) CFLAGS="-O1 -g" \
	  EXTRA_CFLAGS="$(SANITIZE)" EXTRA_LDFLAGS="$(SANITIZE)" all
	@SONDE_BUILD=$(CHECK_BUILD) SONDE_SANITIZE=1 spec/run

# make bench: sonde and its peers side by side (spec/bench/bench.lua).
BENCH_DEPS := traceroute mtr-tiny scamper nmap zmap
bench: deps all
	@$(MAKE) --no-print-directory deps DEPS="$(BENCH_DEPS)"
	@prefix="sdbench$$$$-"; \
	trap 'luajit spec/support/lab.lua down "$$prefix" >/dev/null 2>&1; rm -rf /tmp/"$$prefix"*' EXIT; \
	trap 'exit 130' INT; trap 'exit 143' TERM; \
	SONDE_LAB_PREFIX="$$prefix" \
	LUA_PATH="spec/support/?.lua;scripts/?.lua;scripts/?/init.lua;;" \
	  LUA_CPATH="$(BUILD)/lua/?.so;;" SONDE_BUILD="$(BUILD)" \
	  luajit spec/bench/bench.lua

demo: deps all
	@sh scripts/demo.sh

test: deps all
	@spec/run

clean:
	rm -rf $(BUILD) $(CHECK_BUILD)
