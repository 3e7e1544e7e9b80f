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

SRCS := $(filter-out src/main.c src/repl.c,$(wildcard src/*.c))
OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
HDRS := $(wildcard src/*.h) $(BUILD)/boot.h $(BUILD)/repl_lua.h
# the host's REPL: line editing and history from libedit (BSD licence)
EDIT_CFLAGS = $(shell $(PKG_CONFIG) --cflags libedit 2>/dev/null)
EDIT_LIBS   = $(shell $(PKG_CONFIG) --libs libedit 2>/dev/null || echo -ledit)

.PHONY: meta check-lua test-rock valgrind install-rock all deps test test-host test-luajit test-embed demo install clean bench check-san fuzz fuzz-dmp bench-dmp bench-jit

all: $(if $(LUA),check-lua) $(BUILD)/coru $(BUILD)/coru.so

# LUA: the interpreter a rock is built for (luarocks make passes it, see the
# rockspec). coru is a LuaJIT 2.1 module: refuse any other Lua.
check-lua:
	@$(LUA) -e 'os.exit(jit and jit.version_num >= 20100 and 0 or 1)' 2>/dev/null || \
	  { echo "coru: $(LUA) is not LuaJIT 2.1; coru needs LuaJIT (PUC Lua 5.1 cannot load it: no lua_isyieldable, no yield across pcall)" >&2; exit 1; }

$(DEPS_OK): deps/packages.txt deps/install.sh
	@sh deps/install.sh
	@mkdir -p $(BUILD) && touch $@

deps: $(DEPS_OK)

$(BUILD)/boot.h: src/boot.lua tools/lua2c.sh | $(DEPS_OK)
	@mkdir -p $(BUILD)
	sh tools/lua2c.sh coru_boot_lua < $< > $@

$(BUILD)/repl_lua.h: src/repl.lua tools/lua2c.sh | $(DEPS_OK)
	@mkdir -p $(BUILD)
	sh tools/lua2c.sh coru_repl_lua < $< > $@

$(BUILD)/obj/%.o: src/%.c $(HDRS) | $(DEPS_OK)
	@mkdir -p $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj/repl.o: src/repl.c $(HDRS) | $(DEPS_OK)
	@mkdir -p $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) $(EDIT_CFLAGS) -c $< -o $@

$(BUILD)/coru: $(OBJS) $(BUILD)/obj/main.o $(BUILD)/obj/repl.o
	$(CC) $(SAN) -Wl,-E -o $@ $^ $(LUAJIT_LIBS) $(PKG_LIBS) $(EDIT_LIBS) -lm -ldl

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
	@if [ -z "$(SANITIZE)" ]; then $(MAKE) --no-print-directory test-rock; fi
	@if [ -z "$(QUICK_BENCH_SKIP)" ] && [ -z "$(SANITIZE)" ]; then SMOKE=1 sh bench/run.sh; fi

test-embed: $(BUILD)/embed
	$(BUILD)/embed

test-host: all $(NODE_DEPS)
	$(SPEC_ENV) $(BUSTED) --lua=$(BUILD)/coru spec

test-luajit: all $(NODE_DEPS)
	$(SPEC_ENV) $(if $(SANITIZE),LD_PRELOAD="$(ASAN_RT)" ASAN_OPTIONS=detect_leaks=0) $(BUSTED) --lua=luajit spec

# luarocks make into a temporary tree, then both faces from that tree only
# (LUA: luarocks' 5.1 interpreter is PUC Lua 5.1 where that is installed too)
test-rock: all
	@command -v luarocks >/dev/null || { echo "test-rock: luarocks not found (deps/)" >&2; exit 1; }
	@tree=$$(mktemp -d "$${TMPDIR:-/tmp}/coru-rock.XXXXXX") && trap 'rm -rf "$$tree"' EXIT && \
	  luarocks --lua-version=5.1 --tree="$$tree" make coru-scm-1.rockspec LUA="$$(command -v luajit)" >"$$tree/.log" 2>&1 || \
	    { cat "$$tree/.log" >&2; echo "test-rock: luarocks make failed" >&2; exit 1; } ; \
	  env -u LUA_PATH -u LUA_CPATH "$$tree/bin/coru" tools/rock_check.lua "$$tree" host && \
	  LUA_PATH="$$tree/share/lua/5.1/?.lua;$$tree/share/lua/5.1/?/init.lua" LUA_CPATH="$$tree/lib/lua/5.1/?.so" \
	    luajit tools/rock_check.lua "$$tree" module

# LuaLS annotations from the runtime's exports (tools/metagen.lua)
meta: all
	$(SPEC_ENV) $(BUILD)/coru tools/metagen.lua $(CURDIR)

valgrind: all
	$(SPEC_ENV) CORU_REAL_BIN="$(CURDIR)/$(BUILD)/coru" $(BUSTED) --lua=tools/valgrind-coru spec

# Two floo-sync mirrors converging through coru-floo-server (the scheduler
# tour that used to be the demo: build/coru examples/demo.lua).
demo: all
	$(BUILD)/coru examples/floo-demo.lua $(CURDIR)/$(BUILD)/coru

bench: all
	sh bench/run.sh
	sh bench/floo/run.sh
	sh bench/dmp/run.sh
	sh bench/jit.sh

# Handlers with the JIT on and off, against each other (bench/jit.sh, issue 14)
bench-jit: all
	sh bench/jit.sh

# coru.dmp against the npm diff-match-patch under Node.js (bench/dmp/run.sh)
bench-dmp: all $(NODE_DEPS)
	sh bench/dmp/run.sh

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

# libFuzzer harnesses of the dmp core (pure C, no Lua): patch_from_text on
# any bytes, and make/to_text/from_text/apply round trips. Each runs for
# FUZZ_SECONDS from the seeds in fuzz/seeds/ (inputs that once failed among
# them); a crash leaves its input in build-fuzz/.
FUZZ_SECONDS ?= 30
FUZZ_CC ?= clang
DMP_CORE = src/dmp_text.c src/dmp_diff.c src/dmp_patch.c
DMP_FUZZERS = build-fuzz/dmp_fromtext_fuzz build-fuzz/dmp_roundtrip_fuzz
build-fuzz/%: fuzz/%.c fuzz/dmp_fuzz_common.h $(DMP_CORE) src/dmp.h | $(DEPS_OK)
	@mkdir -p build-fuzz
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc -o $@ $< $(DMP_CORE) -lm

# make fuzz: every fuzz target of the tree (a rule without a recipe, so that
# other fuzzers can add theirs as prerequisites)
fuzz: fuzz-dmp

fuzz-dmp: $(DMP_FUZZERS)
	@for f in $(DMP_FUZZERS); do \
	  n=$$(basename $$f); echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	  seeds=$$(echo $$n | sed 's/^dmp_//; s/_fuzz$$//'); mkdir -p build-fuzz/corpus-$$seeds; \
	  if (cd build-fuzz && ./$$n -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 \
	        corpus-$$seeds ../fuzz/seeds/$$seeds > $$n.log 2>&1) \
	     && ! grep -q "runtime error" build-fuzz/$$n.log; then \
	    grep "number_of_executed_units" build-fuzz/$$n.log; \
	  else \
	    grep -E "runtime error|ERROR|dmp fuzz|SUMMARY|Test unit written" build-fuzz/$$n.log | head -20; exit 1; \
	  fi; \
	done

clean:
	rm -rf build build-san build-fuzz
