# bindings/install.mk - `make install` and `make uninstall`, included by the
# top Makefile (which defines PREFIX, BUILD and CC).
#
#   make install                          everything under /usr/local
#   make install PREFIX=/opt/sonde        elsewhere
#   make install DESTDIR=/tmp/pkg         staged (packaging): files go to
#                                         $(DESTDIR)$(PREFIX)/..., and the
#                                         paths written into them (sonde.pc)
#                                         are $(PREFIX)'s
#   make install SETCAP=1                 also `setcap cap_net_raw+ep` the
#                                         installed sonde (needs root)
#   make uninstall [PREFIX=...] [DESTDIR=...]
#
# What goes where (PREFIX=/usr/local):
#   bin/sonde                             the executable
#   share/sonde/scripts/                  the commands (trace.lua, ...) and the
#                                         Lua library they use (sonde/...);
#                                         sonde finds them as
#                                         ../share/sonde/scripts next to itself
#   lib/libsonde.a                        the engine, static
#   lib/libsonde.so.X.Y.Z                 the engine, shared (soname
#   lib/libsonde.so.0 -> libsonde.so.X.Y.Z  libsonde.so.0), and the links
#   lib/libsonde.so -> libsonde.so.0      the linker and ldconfig expect
#   include/sonde.h                       the engine's API
#   lib/pkgconfig/sonde.pc                `pkg-config --cflags --libs sonde`
#   share/lua/5.1/sonde/...               the Lua module, where LuaJIT looks:
#   lib/lua/5.1/sonde/core.so             `luajit -e 'require "sonde"'` works
#                                         with Debian LuaJIT's default
#                                         package.path and package.cpath
#                                         (/usr/local/share/lua/5.1/?.lua,
#                                         /usr/local/lib/lua/5.1/?.so; for
#                                         PREFIX=/usr, /usr/share/lua/5.1 and
#                                         /usr/lib/<multiarch>/lua/5.1)
# Elsewhere, point LuaJIT at them:
#   LUA_PATH="$PREFIX/share/lua/5.1/?.lua;$PREFIX/share/lua/5.1/?/init.lua;;"
#   LUA_CPATH="$PREFIX/lib/lua/5.1/?.so;;"
#
# SETCAP=1: the installed sonde gets CAP_NET_RAW as a file capability, so
# that any user can run it with raw sockets (README "Privileges": it opens
# them first, then drops the capability before any script runs). setcap
# needs root (CAP_SETFCAP) and a file system with extended attributes; a
# file capability is ignored on a nosuid mount. Without SETCAP, sonde runs
# unprivileged for ordinary users (ICMP datagram sockets, error queues).

ifndef SONDE_INSTALL_MK
SONDE_INSTALL_MK := 1

# Included anywhere in a makefile, this fragment leaves its default goal
# alone (restored at the end; an empty one lets the next target be it).
SONDE_INSTALL_GOAL := $(.DEFAULT_GOAL)

DESTDIR      ?=
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
DATADIR      ?= $(PREFIX)/share
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SCRIPTSDIR   ?= $(DATADIR)/sonde/scripts
MULTIARCH    := $(shell $(CC) -print-multiarch 2>/dev/null)
LUA_LDIR     ?= $(DATADIR)/lua/5.1
LUA_CDIR     ?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/lib/$(MULTIARCH)/lua/5.1,$(PREFIX)/lib/lua/5.1)
INSTALL      ?= install
SETCAP       ?=
LDCONFIG     ?= ldconfig

SONDE_VERSION := $(VERSION)
SONDE_SOMAJOR := $(firstword $(subst ., ,$(SONDE_VERSION)))
SONDE_SONAME  := libsonde.so.$(SONDE_SOMAJOR)
SONDE_SOFILE  := libsonde.so.$(SONDE_VERSION)

# The commands (scripts/*.lua) and the library's files (scripts/sonde/...).
SONDE_COMMANDS := $(notdir $(wildcard scripts/*.lua))
SONDE_LIBFILES := $(patsubst scripts/%,%,$(shell find scripts/sonde -type f \
                    \( -name '*.lua' -o -name '*.json' \) 2>/dev/null | LC_ALL=C sort))

# sonde.pc: paths under PREFIX written as ${prefix}/... (relocatable with
# pkg-config --define-prefix).
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

.PHONY: install uninstall install-check-version

install-check-version:
	@test -n "$(SONDE_VERSION)" || { echo "install: no VERSION in the Makefile" >&2; exit 1; }

install: install-check-version $(BUILD)/sonde $(BUILD)/libsonde.a $(BUILD)/libsonde.so \
         $(BUILD)/lua/sonde/core.so
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(SCRIPTSDIR) $(DESTDIR)$(LUA_LDIR) \
	  $(DESTDIR)$(LUA_CDIR)/sonde
	$(INSTALL) -m 755 $(BUILD)/sonde $(DESTDIR)$(BINDIR)/sonde
	$(INSTALL) -m 644 $(BUILD)/libsonde.a $(DESTDIR)$(LIBDIR)/libsonde.a
	$(INSTALL) -m 755 $(BUILD)/libsonde.so $(DESTDIR)$(LIBDIR)/$(SONDE_SOFILE)
	ln -sf $(SONDE_SOFILE) $(DESTDIR)$(LIBDIR)/$(SONDE_SONAME)
	ln -sf $(SONDE_SONAME) $(DESTDIR)$(LIBDIR)/libsonde.so
	$(INSTALL) -m 644 engine/include/sonde.h $(DESTDIR)$(INCLUDEDIR)/sonde.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pc_path,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pc_path,$(INCLUDEDIR))|' -e 's|@VERSION@|$(SONDE_VERSION)|' \
	    bindings/sonde.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/sonde.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/sonde.pc
	@set -e; for f in $(SONDE_COMMANDS); do \
	  $(INSTALL) -m 644 scripts/$$f $(DESTDIR)$(SCRIPTSDIR)/$$f; \
	done; \
	for f in $(SONDE_LIBFILES); do \
	  $(INSTALL) -D -m 644 scripts/$$f $(DESTDIR)$(SCRIPTSDIR)/$$f; \
	  $(INSTALL) -D -m 644 scripts/$$f $(DESTDIR)$(LUA_LDIR)/$$f; \
	done; \
	echo "install: $(words $(SONDE_COMMANDS)) commands in $(DESTDIR)$(SCRIPTSDIR)," \
	  "$(words $(SONDE_LIBFILES)) library files in it and in $(DESTDIR)$(LUA_LDIR)"
	$(INSTALL) -m 755 $(BUILD)/lua/sonde/core.so $(DESTDIR)$(LUA_CDIR)/sonde/core.so
ifeq ($(SETCAP),1)
	setcap cap_net_raw+ep $(DESTDIR)$(BINDIR)/sonde
	@echo "install: $(DESTDIR)$(BINDIR)/sonde has CAP_NET_RAW (raw sockets for every user)"
endif
	@if [ -z "$(DESTDIR)" ] && [ -n "$(filter /usr /usr/local,$(PREFIX))" ] && \
	    [ -n "$(LDCONFIG)" ] && [ "$$(id -u)" = 0 ]; then $(LDCONFIG); fi

# Removes what install put there, and the directories of sonde's own that
# are left empty; never a file it did not install.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sonde $(DESTDIR)$(LIBDIR)/libsonde.a \
	  $(DESTDIR)$(LIBDIR)/$(SONDE_SOFILE) $(DESTDIR)$(LIBDIR)/$(SONDE_SONAME) \
	  $(DESTDIR)$(LIBDIR)/libsonde.so $(DESTDIR)$(INCLUDEDIR)/sonde.h \
	  $(DESTDIR)$(PKGCONFIGDIR)/sonde.pc $(DESTDIR)$(LUA_CDIR)/sonde/core.so
	@set -e; for f in $(SONDE_COMMANDS); do rm -f $(DESTDIR)$(SCRIPTSDIR)/$$f; done; \
	for f in $(SONDE_LIBFILES); do \
	  rm -f $(DESTDIR)$(SCRIPTSDIR)/$$f $(DESTDIR)$(LUA_LDIR)/$$f; \
	done; \
	for d in $(DESTDIR)$(SCRIPTSDIR)/sonde $(DESTDIR)$(LUA_LDIR)/sonde $(DESTDIR)$(LUA_CDIR)/sonde; do \
	  if [ -d "$$d" ]; then find "$$d" -depth -type d -empty -delete; fi; \
	done; \
	rmdir $(DESTDIR)$(SCRIPTSDIR) $(DESTDIR)$(DATADIR)/sonde 2>/dev/null || true
	@echo "uninstall: sonde removed from $(DESTDIR)$(PREFIX)"

.DEFAULT_GOAL := $(SONDE_INSTALL_GOAL)
endif
