# authscore - build, test and install.  See README.md.
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build

PKGS    := opendkim libpsl libidn2 ldns libcares jansson lua5.4
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=gnu11 -Wall -Wextra -Werror
ALL_CFLAGS = $(WARN) $(CFLAGS) -fPIC -fvisibility=hidden -Iinclude $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -I/usr/include/exim4
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lspf2 -lopendmarc -lhiredis -lcrypto -lz -lm

LIB_SRC := $(filter-out plugin/cli.c plugin/exim.c plugin/luadump.c,$(wildcard plugin/*.c))
LIB_OBJ := $(LIB_SRC:plugin/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/default_rules.o
TEST_SRC := $(wildcard tests/*_test.c tests/*_suite.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

# Debian packages: to build, and to run the tests (servers and independent checkers).
BUILD_DEBS := gcc make pkg-config liblua5.4-dev libspf2-dev libopendkim-dev libopendmarc-dev \
              libhiredis-dev exim4-dev libpsl-dev libidn2-dev publicsuffix libldns-dev libc-ares-dev libjansson-dev libssl-dev zlib1g-dev
TEST_DEBS  := nsd ldnsutils python3 python3-yaml python3-authres exim4-daemon-heavy swaks \
              redis-server redis-sentinel libxml2-utils python3-dnspython

.PHONY: all deps deps-test check sanitize demo bench clean install
all: $(BUILD)/authscore $(BUILD)/authscore.so

$(BUILD)/obj/%.o: plugin/%.c $(wildcard include/*.h plugin/*.h)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The default ruleset is compiled in, as text and as Lua bytecode (plugin/luadump.c, a build-time
# tool): nothing to find, read or compile at start-up.
$(BUILD)/gen/luadump: plugin/luadump.c
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) $(shell pkg-config --cflags lua5.4) -o $@ $< $(shell pkg-config --libs lua5.4)

$(BUILD)/gen/default_rules.c: lua/default.lua $(BUILD)/gen/luadump
	$(BUILD)/gen/luadump $< $@

$(BUILD)/obj/default_rules.o: $(BUILD)/gen/default_rules.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libauthscore.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/authscore: $(BUILD)/obj/cli.o $(BUILD)/libauthscore.a
	$(CC) $(CFLAGS) -Wl,--as-needed -o $@ $^ $(LIBS)

# Linked from the archive with --as-needed: only the objects and libraries the entry points reach
# (no jansson, no libspf2), so Exim's dlopen of a fresh process relocates less.
$(BUILD)/authscore.so: $(BUILD)/obj/exim.o $(BUILD)/libauthscore.a
	$(CC) $(CFLAGS) -shared -fvisibility=hidden -Wl,--as-needed -o $@ $^ $(LIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libauthscore.a $(wildcard tests/*.h)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(BUILD)/libauthscore.a $(LIBS)

tests: $(TEST_BIN)

deps:
	@sh tests/deps.sh $(BUILD_DEBS)
deps-test:
	@sh tests/deps.sh $(BUILD_DEBS) $(TEST_DEBS)

check: deps-test
	$(MAKE) all tests
	sh tests/run.sh $(BUILD)
	$(MAKE) sanitize

# The same tests, built again under AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" all tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 sh tests/run.sh build/asan

demo: deps
	$(MAKE) all
	sh examples/demo.sh $(BUILD)/authscore

# The benchmark (bench/run.sh; RSPAMD=1 adds rspamd side by side).  Packages first, then a second make
# runs it, so that LIBS is read from pkg-config once the -dev packages are there.
BENCH_DEBS := nsd ldnsutils python3 python3-dnspython python3-cryptography redis-server valgrind openssl
bench:
ifeq ($(BENCH_STAGE),run)
	CC='$(CC)' BENCH_CFLAGS='$(WARN) $(CFLAGS)' BENCH_LIBS='$(LIBS)' RSPAMD='$(RSPAMD)' sh bench/run.sh $(BUILD)
else
	@sh tests/deps.sh $(BUILD_DEBS) $(BENCH_DEBS)
	$(MAKE) all
	@$(MAKE) --no-print-directory BENCH_STAGE=run bench
endif

clean:
	rm -rf build

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/authscore
	install -m 755 $(BUILD)/authscore $(DESTDIR)$(PREFIX)/bin/authscore
	install -m 644 $(BUILD)/authscore.so $(DESTDIR)$(PREFIX)/lib/authscore/authscore.so
