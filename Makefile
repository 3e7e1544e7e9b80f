# coru: build the host (build/coru) and the module (build/coru.so) from the
# same objects. `make SANITIZE=1 ...` builds with ASan+UBSan in build-san/.
PREFIX     ?= /usr/local
LUA_VERSION = 5.1
BUILD      ?= build$(if $(SANITIZE),-san)
PKG_CONFIG ?= pkg-config
DEPS_OK    := $(BUILD)/.deps-ok

CFLAGS  ?= -O2 -g
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN      = $(if $(SANITIZE),$(SAN_FLAGS))
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags luajit libuv openssl 2>/dev/null)
PKG_LIBS   = $(shell $(PKG_CONFIG) --libs libuv openssl 2>/dev/null)
LUAJIT_LIBS = $(shell $(PKG_CONFIG) --libs luajit 2>/dev/null)
ALL_CFLAGS = -std=gnu11 -Wall -Wextra -Werror -fPIC -fvisibility=hidden $(PKG_CFLAGS) -I$(BUILD) -Isrc $(SAN) $(CFLAGS)

SRCS := $(filter-out src/main.c,$(wildcard src/*.c))
OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
HDRS := $(wildcard src/*.h) $(BUILD)/boot.h

.PHONY: valgrind install-rock all deps test test-host test-luajit test-embed demo install clean bench check-san

all: $(BUILD)/coru $(BUILD)/coru.so

$(DEPS_OK): deps/packages.txt deps/install.sh
	@sh deps/install.sh
	@mkdir -p $(BUILD) && touch $@

deps: $(DEPS_OK)

$(BUILD)/boot.h: src/boot.lua tools/lua2c.sh | $(DEPS_OK)
	@mkdir -p $(BUILD)
	sh tools/lua2c.sh coru_boot_lua < $< > $@

$(BUILD)/obj/%.o: src/%.c $(HDRS) | $(DEPS_OK)
	@mkdir -p $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/coru: $(OBJS) $(BUILD)/obj/main.o
	$(CC) $(SAN) -Wl,-E -o $@ $^ $(LUAJIT_LIBS) $(PKG_LIBS) -lm -ldl

# An embedder opening and closing three runtimes in a row (spec/c/embed.c).
$(BUILD)/embed: $(OBJS) spec/c/embed.c $(HDRS)
	$(CC) $(ALL_CFLAGS) -Wl,-E -o $@ spec/c/embed.c $(OBJS) $(LUAJIT_LIBS) $(PKG_LIBS) -lm -ldl

# The module takes its Lua API from the interpreter that loads it.
$(BUILD)/coru.so: $(OBJS)
	$(CC) $(SAN) -shared -o $@ $^ $(PKG_LIBS) -lm

SPEC_ENV = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" \
           LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;" CORU_BIN="$(CURDIR)/$(BUILD)/coru"
BUSTED ?= busted
ASAN_RT = $(shell $(CC) -print-file-name=libasan.so)

# Test oracles (Node.js and the npm diff-match-patch packages), never runtime deps.
NODE_DEPS := deps/node_modules/.coru-ok
$(NODE_DEPS): deps/package.json deps/package-lock.json deps/npm.sh
	@sh deps/npm.sh && touch $@

test: all $(NODE_DEPS)
	$(MAKE) --no-print-directory test-embed test-host test-luajit
	@if [ -z "$(QUICK_BENCH_SKIP)" ] && [ -z "$(SANITIZE)" ] && [ -f bench/run.sh ]; then QUICK=1 SMOKE=1 sh bench/run.sh; fi

test-embed: $(BUILD)/embed
	$(BUILD)/embed

test-host: all $(NODE_DEPS)
	$(SPEC_ENV) $(BUSTED) --lua=$(BUILD)/coru spec

test-luajit: all $(NODE_DEPS)
	$(SPEC_ENV) $(if $(SANITIZE),LD_PRELOAD="$(ASAN_RT)" ASAN_OPTIONS=detect_leaks=0) $(BUSTED) --lua=luajit spec

valgrind: all
	$(SPEC_ENV) CORU_REAL_BIN="$(CURDIR)/$(BUILD)/coru" $(BUSTED) --lua=tools/valgrind-coru spec

# Two floo-sync mirrors converging through coru-floo-server (the scheduler
# tour that used to be the demo: build/coru examples/demo.lua).
demo: all
	$(BUILD)/coru examples/floo-demo.lua $(CURDIR)/$(BUILD)/coru

bench: all
	sh bench/run.sh
	sh bench/floo/run.sh

# Every .lua under lua/ (coru/*.lua and subdirectories such as
# coru/floo/) into $(1), keeping the tree.
install_lua = cd lua && find coru -name '*.lua' | while read -r f; do \
	  install -d "$(1)/$$(dirname "$$f")" && install -m 644 "$$f" "$(1)/$$f" || exit 1; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION) $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/coru
	install -m 755 $(BUILD)/coru $(DESTDIR)$(PREFIX)/bin/coru
	install -m 755 $(BUILD)/coru.so $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/coru.so
	$(call install_lua,$(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION))
	install -m 755 bin/coru-floo-server $(DESTDIR)$(PREFIX)/bin/coru-floo-server
	install -m 755 examples/floo-sync $(DESTDIR)$(PREFIX)/bin/floo-sync

# luarocks make: the rock's own directories
install-rock: all
	install -d $(INST_LIBDIR) $(INST_LUADIR)/coru $(INST_BINDIR)
	install -m 755 $(BUILD)/coru.so $(INST_LIBDIR)/coru.so
	$(call install_lua,$(INST_LUADIR))
	install -m 755 $(BUILD)/coru $(INST_BINDIR)/coru
	install -m 755 bin/coru-floo-server $(INST_BINDIR)/coru-floo-server
	install -m 755 examples/floo-sync $(INST_BINDIR)/floo-sync

clean:
	rm -rf build build-san
