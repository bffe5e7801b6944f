# sonde - top-level build. `make demo` and `make test` are all a newcomer runs.

.DEFAULT_GOAL := all

# The one version of sonde: compiled into the engine (sonde_version(),
# sonde.core.version()) and written into sonde.pc and the library's name.
VERSION  := 0.1.0

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
# -MMD -MP: each object's header dependencies in a .d file beside it.
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE -fPIC -MMD -MP $(WARN) $(CFLAGS) \
              $(EXTRA_CFLAGS) -Iengine/include -Iengine \
              -DSONDE_VERSION_STRING='"$(VERSION)"'
# The engine exports its API (SONDE_EXTERN in sonde.h) and nothing else.
ENGINE_CFLAGS := -fvisibility=hidden
ALL_LDFLAGS := $(LDFLAGS) $(EXTRA_LDFLAGS)

# Debian packages: what building needs (make deps), what the specs and
# their tools need besides (make test, make check, make fuzz), what the
# demo runs (make demo), and the peers make bench measures sonde against.
BUILD_DEPS := build-essential pkg-config luajit libluajit-5.1-dev libuv1-dev \
              libmicrohttpd-dev libc-ares-dev
TEST_DEPS  := lua-busted lua-cjson iproute2 nftables procps python3-jsonschema \
              clang libclang-rt-14-dev iputils-ping libcap2-bin util-linux \
              valgrind libjansson-dev scamper prometheus curl dnsmasq-base \
              traceroute mtr-tiny
DEMO_DEPS  := iproute2 procps
BENCH_DEPS := traceroute mtr-tiny scamper nmap zmap
DEPS       := $(BUILD_DEPS)

ENGINE_SRC := $(wildcard engine/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
# sonde.core is every file of bindings/ but the executable's own two.
MAIN_SRC   := bindings/main.c bindings/sandbox.c
CORE_SRC   := $(filter-out $(MAIN_SRC),$(wildcard bindings/*.c))
CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ   := $(MAIN_SRC:%.c=$(BUILD)/%.o)
# What the specs run besides sonde (spec/tools, spec/netsim): built by
# make test, make check and make bench, not by make all.
TEST_TOOLS := $(BUILD)/labpeer $(BUILD)/forge

-include spec/fuzz/fuzz.mk
-include spec/netsim/netsim.mk
-include bindings/install.mk

.PHONY: all deps test-deps demo-deps bench-deps test-tools demo test check \
        bench clean
all: $(BUILD)/libsonde.a $(BUILD)/libsonde.so $(BUILD)/lua/sonde/core.so \
     $(BUILD)/sonde

test-tools: $(TEST_TOOLS)

# Installs only what of $(DEPS) is missing: one `apt-get update`, then
# `apt-get install -y`. The lists add up: the specs need the build's
# packages too.
test-deps:
	@$(MAKE) --no-print-directory deps DEPS="$(BUILD_DEPS) $(TEST_DEPS)"
demo-deps:
	@$(MAKE) --no-print-directory deps DEPS="$(BUILD_DEPS) $(DEMO_DEPS)"
bench-deps:
	@$(MAKE) --no-print-directory deps \
	  DEPS="$(BUILD_DEPS) $(TEST_DEPS) $(BENCH_DEPS)"
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

# Every header as well as -MMD's list: a build folder from before the .d
# files existed (or with a .d lost) is rebuilt whole when a header changes,
# never linked from objects of two struct layouts.
$(BUILD)/engine/%.o: engine/%.c $(wildcard engine/*.h engine/include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ENGINE_CFLAGS) -c -o $@ $<

# The installed executable's fallback scripts directory follows PREFIX.
$(BUILD)/bindings/main.o: BINDING_DEFS := \
  -DSONDE_SCRIPTS_DIR='"$(PREFIX)/share/sonde/scripts"'

$(BUILD)/bindings/%.o: bindings/%.c $(wildcard engine/*.h engine/include/*.h bindings/*.h)
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
check: test-deps
	@$(MAKE) --no-print-directory BUILD=$(CHECK_BUILD) CFLAGS="-O1 -g" \
	  EXTRA_CFLAGS="$(SANITIZE)" EXTRA_LDFLAGS="$(SANITIZE)" all test-tools
	@SONDE_BUILD=$(CHECK_BUILD) SONDE_SANITIZE=1 spec/run

# make bench: sonde and its peers side by side (spec/bench/bench.lua).
bench: bench-deps all test-tools
	@prefix="sdbench$$$$-"; \
	trap 'luajit spec/support/lab.lua down "$$prefix" >/dev/null 2>&1; rm -rf /tmp/"$$prefix"*' EXIT; \
	trap 'exit 130' INT; trap 'exit 143' TERM; \
	SONDE_LAB_PREFIX="$$prefix" \
	LUA_PATH="spec/support/?.lua;scripts/?.lua;scripts/?/init.lua;;" \
	  LUA_CPATH="$(BUILD)/lua/?.so;;" SONDE_BUILD="$(BUILD)" \
	  luajit spec/bench/bench.lua

demo: demo-deps all
	@sh scripts/demo.sh

test: test-deps all test-tools
	@spec/run

clean:
	rm -rf $(BUILD) $(CHECK_BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
