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
ALL_CFLAGS = -std=gnu11 -Wall -Wextra -Wmissing-prototypes -Werror -fPIC -fvisibility=hidden $(PKG_CFLAGS) -I$(BUILD) -Isrc $(SAN) $(CFLAGS)

SRCS := $(filter-out src/main.c src/repl.c,$(wildcard src/*.c))
OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
HDRS := $(wildcard src/*.h) $(BUILD)/boot.h $(BUILD)/repl_lua.h
# the host's REPL: line editing and history from libedit (BSD licence)
EDIT_CFLAGS = $(shell $(PKG_CONFIG) --cflags libedit 2>/dev/null)
EDIT_LIBS   = $(shell $(PKG_CONFIG) --libs libedit 2>/dev/null || echo -ledit)

.PHONY: test-c meta check-lua test-rock valgrind install-rock all deps test test-host test-luajit test-embed demo install clean bench check-san fuzz fuzz-api fuzz-c fuzz-dmp fuzz-json bench-dmp bench-jit bench-json

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
	@sh tools/layers.sh $(BUILD)/obj
	$(MAKE) --no-print-directory test-c test-embed test-host test-luajit
	@if [ -z "$(SANITIZE)" ]; then $(MAKE) --no-print-directory test-rock; fi
	@if [ -z "$(QUICK_BENCH_SKIP)" ] && [ -z "$(SANITIZE)" ]; then SMOKE=1 sh bench/run.sh; fi

test-embed: $(BUILD)/embed
	$(BUILD)/embed

# Plain C tests (no Lua) of the pure-C parts: the line scanner, the TLS engine.
$(BUILD)/scan_test: spec/c/scan_test.c src/scan.c src/scan.h | $(DEPS_OK)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ spec/c/scan_test.c src/scan.c
$(BUILD)/tls_engine_test: spec/c/tls_engine_test.c src/tls_engine.c src/tls.h | $(DEPS_OK)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ spec/c/tls_engine_test.c src/tls_engine.c $(PKG_LIBS)

test-c: $(BUILD)/scan_test $(BUILD)/tls_engine_test
	$(BUILD)/scan_test
	$(BUILD)/tls_engine_test

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

# Every spec file in its own host under memcheck (tools/valgrind-coru),
# VALGRIND_JOBS at a time, each bounded by VALGRIND_FILE_TIMEOUT seconds;
# a line per file, logs in $(BUILD)/valgrind/. CORU_VALGRIND=1 scales the
# specs' deadlines (spec/helper.lua). SPECS=... runs a subset.
VALGRIND_JOBS ?= 2
VALGRIND_FILE_TIMEOUT ?= 600
valgrind: all $(NODE_DEPS)
	@$(SPEC_ENV) CORU_REAL_BIN="$(CURDIR)/$(BUILD)/coru" BUSTED="$(BUSTED)" VALGRIND_JOBS=$(VALGRIND_JOBS) \
	  VALGRIND_FILE_TIMEOUT=$(VALGRIND_FILE_TIMEOUT) VALGRIND_LOGS="$(BUILD)/valgrind" \
	  bash tools/valgrind-specs.sh $(SPECS)

# Two floo-sync mirrors converging through coru-floo-server (the scheduler
# tour that used to be the demo: build/coru examples/demo.lua).
demo: all
	$(BUILD)/coru examples/floo-demo.lua $(CURDIR)/$(BUILD)/coru

bench: all
	sh bench/run.sh
	$(SPEC_ENV) $(BUILD)/coru bench/json/bench.lua
	sh bench/floo/run.sh
	sh bench/dmp/run.sh
	sh bench/jit.sh

# Handlers with the JIT on and off, against each other (bench/jit.sh, issue 14)
bench-jit: all
	sh bench/jit.sh

# coru.json against lua-cjson on the W2 and floo messages (bench/json/bench.lua)
bench-json: all
	$(SPEC_ENV) $(BUILD)/coru bench/json/bench.lua

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

# ---------------------------------------------------------------- fuzzing
# make fuzz: the Lua API fuzzer (fuzz/api_fuzz.lua in $(BUILD)/coru for
# FUZZ_TIME seconds; SANITIZE=1 runs it under ASan+UBSan) and every libFuzzer
# harness fuzz/*_fuzz.c (FUZZ_C_TIME seconds each, default FUZZ_SECONDS); the
# dmp harnesses have their own rule below (fuzz-dmp). FUZZ_SEED replays a run.
# Conventions: fuzz/README.md.
FUZZ_TIME   ?= 60
# FUZZ_KNOWN=skip leaves out the shapes of the two fixed findings of
# fuzz/README.md (JIT off, no fs_poll handles): for bisecting, not for CI
FUZZ_KNOWN  ?=
FUZZ_SECONDS ?= 30
FUZZ_C_TIME ?= $(FUZZ_SECONDS)
ifeq ($(origin FUZZ_SEED),undefined)
FUZZ_SEED   := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
FUZZ_CC     ?= clang
FUZZ_BUILD   = build-fuzz
FUZZ_HARNESSES := $(filter-out fuzz/dmp_%,$(wildcard fuzz/*_fuzz.c))
FUZZ_BINS    := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_HARNESSES))
FUZZ_DEPS_OK := $(FUZZ_BUILD)/.deps-ok

$(FUZZ_DEPS_OK): deps/fuzz-packages.txt deps/install.sh
	@sh deps/install.sh deps/fuzz-packages.txt
	@mkdir -p $(FUZZ_BUILD) && touch $@

# A harness names the sources it links in one "FUZZ_SRCS:" comment line.
$(FUZZ_BINS): $(FUZZ_BUILD)/%: fuzz/%.c $(wildcard src/*.c src/*.h) | $(FUZZ_DEPS_OK)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc \
	  $(shell sed -n 's/.*FUZZ_SRCS:\(.*\)$$/\1/p' $<) $< -o $@

fuzz: fuzz-api fuzz-c fuzz-dmp

fuzz-c: $(FUZZ_BINS)
	@for h in $(FUZZ_BINS); do \
	  n=$$(basename $$h); mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
	  seeds=$$( [ -d fuzz/corpus/$$n ] && echo fuzz/corpus/$$n ); \
	  echo "fuzz: $$n for $(FUZZ_C_TIME) s, seed $(FUZZ_SEED)"; \
	  if ! $$h -artifact_prefix=$(FUZZ_BUILD)/ -seed=$(FUZZ_SEED) -max_total_time=$(FUZZ_C_TIME) -print_final_stats=1 \
	       $(FUZZ_BUILD)/corpus/$$n $$seeds >$(FUZZ_BUILD)/$$n.log 2>&1; then \
	    tail -n 60 $(FUZZ_BUILD)/$$n.log; \
	    echo "fuzz: FINDING in $$n (the crashing input is named in the log above)"; exit 1; \
	  fi; \
	  grep -E "stat::number_of_executed_runs|Done" $(FUZZ_BUILD)/$$n.log | tr '\n' ' '; echo; \
	done

# handle_abort=1: a bare abort() (libuv has a few) leaves a stack in the report
fuzz-api: all
	@mkdir -p $(FUZZ_BUILD) && rm -f $(FUZZ_BUILD)/api-san.*
	@echo "fuzz: api_fuzz.lua in $(BUILD)/coru for $(FUZZ_TIME) s, seed $(FUZZ_SEED)"
	@ASAN_OPTIONS=detect_leaks=0:handle_abort=1:log_path=$(CURDIR)/$(FUZZ_BUILD)/api-san \
	 UBSAN_OPTIONS=log_path=$(CURDIR)/$(FUZZ_BUILD)/api-san $(SPEC_ENV) CORU_FUZZ_KNOWN=$(FUZZ_KNOWN) \
	 timeout -k 10 $$(( $(FUZZ_TIME) + 60 )) $(BUILD)/coru fuzz/api_fuzz.lua $(FUZZ_SEED) $(FUZZ_TIME) \
	   </dev/null >/dev/null 2>$(FUZZ_BUILD)/api.log; st=$$?; \
	 tr -d '\000' < $(FUZZ_BUILD)/api.log | grep -a "^api fuzz:"; \
	 if [ $$st -ne 0 ] || ls $(FUZZ_BUILD)/api-san.* >/dev/null 2>&1; then \
	   cat $(FUZZ_BUILD)/api-san.* 2>/dev/null | head -n 80; tail -n 20 $(FUZZ_BUILD)/api.log; \
	   echo "fuzz: FINDING (status $$st, 124: a hang): make fuzz-api FUZZ_SEED=$(FUZZ_SEED) FUZZ_TIME=$(FUZZ_TIME)$(if $(SANITIZE), SANITIZE=1)"; \
	   exit 1; \
	 fi

# The JSON differential fuzzer: coru.json against lua-cjson on random values
# and mutated texts (fuzz/json_fuzz.lua) for FUZZ_JSON_TIME seconds.
FUZZ_JSON_TIME ?= $(FUZZ_SECONDS)
fuzz-json: all
	@echo "fuzz: json_fuzz.lua in $(BUILD)/coru for $(FUZZ_JSON_TIME) s, seed $(FUZZ_SEED)"
	@$(SPEC_ENV) ASAN_OPTIONS=detect_leaks=0 timeout -k 10 $$(( $(FUZZ_JSON_TIME) + 60 )) \
	  $(BUILD)/coru fuzz/json_fuzz.lua $(FUZZ_SEED) $(FUZZ_JSON_TIME) </dev/null || \
	  { echo "fuzz: FINDING: make fuzz-json FUZZ_SEED=$(FUZZ_SEED) FUZZ_JSON_TIME=$(FUZZ_JSON_TIME)$(if $(SANITIZE), SANITIZE=1)"; exit 1; }

# libFuzzer harnesses of the dmp core (pure C, no Lua): patch_from_text on
# any bytes, make/to_text/from_text/apply round trips, and the UTF-8 layer
# (the SIMD validator against the converter). Each runs for
# FUZZ_SECONDS from the seeds in fuzz/seeds/ (inputs that once failed among
# them); a crash leaves its input in build-fuzz/.
DMP_CORE = $(filter-out src/dmp_lua%,$(wildcard src/dmp*.c))
DMP_FUZZERS = $(patsubst fuzz/%.c,build-fuzz/%,$(wildcard fuzz/dmp_*_fuzz.c))
build-fuzz/%: fuzz/%.c fuzz/dmp_fuzz_common.h $(DMP_CORE) src/dmp.h | $(DEPS_OK)
	@mkdir -p build-fuzz
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc -o $@ $< $(DMP_CORE) -lm


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
