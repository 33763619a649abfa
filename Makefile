# sluice - hand-written Makefile; ./configure writes config.mk (run by
# itself when missing). `make`, `make run`, `make check`, `make check
# SANITIZE=1`, `make bench`, `make deps`, `make check-includes`, `make fuzz`.

ifeq ($(wildcard config.mk),)
CONFIG_MISSING := 1
else
include config.mk
endif

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD := build-san
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LTO ?= 0
OPT ?= -O2
else
BUILD := build
SAN_FLAGS :=
LTO ?= 1
OPT ?= -O3
endif

# The daemon is built with -O3 and linked with link-time optimisation
# (inlining across files), and calls shared libraries through the GOT, not
# PLT stubs: together about 460 fewer instructions per small HTTP/2
# request (docs/bench.md). Objects are "fat", so unit tests and tools link
# from their plain code, as fast as before. LTO=0 and OPT=-O2 turn them
# off; sanitizer builds leave them off. The link-time pass runs without
# warnings: at -O3 it sees through the config parsers' out-parameters and
# warns "may be used uninitialized" where every path sets them first.
ifeq ($(LTO),1)
LTO_CFLAGS := -flto=auto -ffat-lto-objects -fno-plt
LTO_LDFLAGS := -flto=auto -fno-plt
NO_LTO := -fno-lto
else
LTO_CFLAGS :=
LTO_LDFLAGS :=
NO_LTO :=
endif

CFLAGS_ALL := -std=c11 -D_GNU_SOURCE -g $(OPT) -pthread -MMD -MP $(WARN_CFLAGS) -Werror \
	$(NGHTTP2_CFLAGS) $(OPENSSL_CFLAGS) $(JANSSON_CFLAGS) $(ZLIB_CFLAGS) $(HIREDIS_CFLAGS) $(BROTLI_CFLAGS) \
	$(QUIC_CFLAGS) $(SAN_FLAGS) $(LTO_CFLAGS) $(CFLAGS)
LIBS_ALL := $(NGHTTP2_LIBS) $(OPENSSL_LIBS) $(JANSSON_LIBS) $(EV_LIBS) $(ZLIB_LIBS) $(WSLAY_LIBS) \
	$(HIREDIS_LIBS) $(BROTLI_LIBS) $(QUIC_LIBS) -lpthread -lm
LDFLAGS_ALL := -pthread $(SAN_FLAGS) $(LDFLAGS)

SRCS := $(sort $(wildcard src/*.c src/*/*.c))
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS))
MAIN_OBJ := $(BUILD)/src/main.o
UNIT_SRCS := $(sort $(wildcard t/unit/test_*.c t/unit/*/test_*.c))
UNIT_BINS := $(patsubst %.c,$(BUILD)/%,$(UNIT_SRCS))

ifeq ($(V),1)
Q :=
else
Q := @
endif

DEB_PKGS := build-essential autoconf automake pkg-config \
	libnghttp2-dev libev-dev libssl-dev libjansson-dev check libwslay-dev libhiredis-dev zlib1g-dev libbrotli-dev \
	libngtcp2-dev libngtcp2-crypto-gnutls-dev libnghttp3-dev libgnutls28-dev ngtcp2-client ngtcp2-server \
	openssl ca-certificates curl nghttp2-client nghttp2-proxy nghttp2-server wrk redis-server haproxy \
	python3 python3-pytest python3-h2 python3-websockets python3-uvicorn gunicorn python3-hypercorn python3-grpcio python3-prometheus-client python3-redis \
	python3-httpx python3-requests python3-brotli \
	h2o nginx valgrind procps util-linux clang libclang-rt-14-dev

.PHONY: all run check check-unit check-integration check-includes bench deps clean distclean fuzz

all: $(BUILD)/sluice sluice

ifdef CONFIG_MISSING
config.mk: configure.ac config.mk.in
	autoreconf -i
	./configure
	@$(MAKE) $(filter-out deps,$(MAKECMDGOALS))
$(BUILD)/sluice sluice $(UNIT_BINS) check check-unit check-integration run bench: config.mk
	@true
else

config.mk: configure.ac config.mk.in
	autoreconf -i
	./configure

# The flags an object was built with: when they change (LTO=0, OPT=...,
# an edit here), every object is rebuilt instead of mixing old and new.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW := $(CC) $(CFLAGS_ALL) | $(LTO_LDFLAGS)
ifneq ($(shell cat $(FLAGS_STAMP) 2>/dev/null),$(strip $(FLAGS_NOW)))
$(shell mkdir -p $(BUILD) && echo '$(strip $(FLAGS_NOW))' > $(FLAGS_STAMP))
endif

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libsluice.a: $(LIB_OBJS)
	@rm -f $@
	$(Q)ar rcs $@ $^

# The dev default config is embedded so `sluice` with no -c just runs.
$(BUILD)/gen/default_config.c: etc/sluice.json
	@mkdir -p $(dir $@)
	$(Q){ echo '/* generated from etc/sluice.json */'; \
	  echo 'extern const char sl_default_config[];'; \
	  echo 'const char sl_default_config[] = {'; \
	  od -An -v -tx1 $< | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '0};'; } > $@

$(BUILD)/sluice: $(MAIN_OBJ) $(BUILD)/gen/default_config.o $(BUILD)/libsluice.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(OPT) $(LDFLAGS_ALL) $(LTO_LDFLAGS) -o $@ $^ $(LIBS_ALL)

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

sluice: $(BUILD)/sluice
	$(Q)[ "$(SANITIZE)" = 1 ] || cp -f $< $@

$(BUILD)/t/unit/%: t/unit/%.c $(BUILD)/libsluice.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CFLAGS_ALL) $(NO_LTO) $(CHECK_CFLAGS) -Isrc -o $@ $< $(BUILD)/libsluice.a $(LDFLAGS_ALL) $(CHECK_LIBS) $(LIBS_ALL)

run: $(BUILD)/sluice
	$(BUILD)/sluice -c etc/sluice.json

check: check-includes check-unit check-integration

# Every suite runs on the shared helpers: the leak fixture and one runner.
check-unit: $(UNIT_BINS)
	@fail=0; for f in $(UNIT_SRCS); do \
		grep -q 'sl_test_alloc_setup\|sl_test_tcase' $$f && grep -q 'sl_test_run' $$f || \
		{ echo "check-unit: $$f does not use t/unit/helpers.h (leak fixture, runner)"; fail=1; }; \
	done; \
	for t in $(UNIT_BINS); do \
		echo "== $$t"; CK_DEFAULT_TIMEOUT=20 $$t || fail=1; \
	done; exit $$fail

# Test-only clients that misbehave on purpose (t/tools/).
$(BUILD)/t/tools/%: t/tools/%.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) $(NO_LTO) -o $@ $< $(LDFLAGS_ALL) $(LIBS_ALL)

check-integration: $(BUILD)/sluice $(BUILD)/t/tools/h3reset
	SLUICE_BIN=$(abspath $(BUILD)/sluice) SLUICE_SANITIZE=$(SANITIZE) \
		SLUICE_TOOLS=$(abspath $(BUILD)/t/tools) \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider t/integration $(PYTEST_ARGS)

bench: $(BUILD)/sluice
	SLUICE_BIN=$(abspath $(BUILD)/sluice) bash t/bench/run.sh

endif

fuzz:
	$(MAKE) -C t/fuzz

check-includes:
	@bash t/check-includes.sh

deps:
	DEBIAN_FRONTEND=noninteractive apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PKGS)

clean:
	rm -rf build build-san sluice

distclean: clean
	rm -rf config.mk config.log config.status configure autom4te.cache aclocal.m4 build-aux

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
