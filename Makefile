# seekmesh: one Makefile for the whole tree.
#
#   make            build libmesh.a and every service into build/
#   make run        install what is missing, build, run the mesh in the foreground
#   make test       install what is missing; selftests, fuzz corpora replay,
#                   integration tests (real processes, the openai npm SDK), the
#                   benchmark's smoke run; ends with "N passed, N failed"
#   make asan       selftests and integration tests on an ASan + UBSan build
#   make fuzz-run   fuzz every parser for FUZZ_SECONDS each
#   make bench      the benchmark of BENCH.md (tests/bench/results/)
#   make analyst    examples/analyst's web page on http://127.0.0.1:8090/ (a
#                   mesh must be up: make run in another shell)
#   make analyst-eval  its evaluation: accuracy and generation time through the
#                   mesh (starts one if none answers on 127.0.0.1:8080)
#   make analyst-load  200 concurrent analysts on one application process

BUILD     ?= build
CC        ?= cc
PKGS      := libzmq libczmq libwebsockets msgpack jansson libssl libcrypto hiredis sqlite3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARNINGS  := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wpointer-arith -Wcast-qual
OPT       ?= -O2 -g
CFLAGS    += -std=c11 -D_GNU_SOURCE $(OPT) $(WARNINGS) $(EXTRA_CFLAGS) \
             -Icommon -Iproto -Iservices $(PKG_CFLAGS)
LDLIBS    += $(PKG_LIBS) -lev -lpthread -lm
ifdef WERROR
CFLAGS    += -Werror
endif

COMMON_SRC := $(wildcard common/*.c) $(wildcard proto/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
LIBMESH    := $(BUILD)/libmesh.a

SERVICES   := ingress router connector mock audit cache
BINS       := $(SERVICES:%=$(BUILD)/bin/seekmesh-%)
TEST_BIN   := $(BUILD)/bin/mesh-selftest
LOADGEN    := $(BUILD)/bin/mesh-loadgen
ASSEMBLE   := $(BUILD)/bin/mesh-assemble
LWSCLIENT  := $(BUILD)/bin/mesh-lws-client
WFBENCH    := $(BUILD)/bin/mesh-wordfilter-bench
CACHEPOLICY := $(BUILD)/bin/mesh-cache-policy
CTL        := $(BUILD)/bin/seekmeshctl

.PHONY: all run test unit fuzz integration sdk asan clean deps bench bench-smoke \
        analyst analyst-eval analyst-load analyst-test compose-deps compose-test deploy-check
all: $(BINS) $(TEST_BIN) $(LOADGEN) $(LWSCLIENT) $(ASSEMBLE) $(CTL) $(WFBENCH) $(CACHEPOLICY)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIBMESH): $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

# Each service: its own sources linked against libmesh.a
define SERVICE_RULE
$(1)_OBJ := $$(patsubst %.c,$(BUILD)/obj/%.o,$$(wildcard services/$(1)/*.c))
$(BUILD)/bin/seekmesh-$(1): $$($(1)_OBJ) $(LIBMESH)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) -o $$@ $$($(1)_OBJ) $(LIBMESH) $$(LDLIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call SERVICE_RULE,$(s))))

# Service modules have selftests too: link them all, without their main.c
SERVICE_TEST_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out %/main.c,$(wildcard services/*/*.c)))
TEST_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/unit/*.c))
$(TEST_BIN): $(TEST_OBJ) $(SERVICE_TEST_OBJ) $(LIBMESH)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(SERVICE_TEST_OBJ) $(LIBMESH) $(LDLIBS)

# The benchmark's load generator
$(LOADGEN): $(BUILD)/obj/tests/bench/loadgen.o $(LIBMESH)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBMESH) $(LDLIBS)

# The word filter's cost a chunk, for make bench
$(WFBENCH): $(BUILD)/obj/tests/bench/wordfilter_bench.o $(LIBMESH)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBMESH) $(LDLIBS)

# The same load through libwebsockets' client, to compare with our own
$(LWSCLIENT): $(BUILD)/obj/tests/bench/lws_client.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# The measurement behind cache.l1_policy (DESIGN.md): L1 under LRU and S3-FIFO
$(CACHEPOLICY): $(BUILD)/obj/tests/bench/cache_policy.o $(BUILD)/obj/services/cache/cache_l1.o \
                $(BUILD)/obj/services/cache/cache_entry.o $(LIBMESH)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The answer assembler on its own, for the SDK's differential test
$(ASSEMBLE): $(BUILD)/obj/tests/tools/mesh_assemble.o $(LIBMESH)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBMESH) $(LDLIBS)

# The operators' command line for the router's admin API
CTL_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard services/ctl/*.c))
$(CTL): $(CTL_OBJ) $(LIBMESH)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(CTL_OBJ) $(LIBMESH) $(LDLIBS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# --- tests ------------------------------------------------------------------
PYTEST := /usr/bin/python3 -m pytest -q -p no:cacheprovider

unit: $(TEST_BIN)
	$(TEST_BIN)
	$(PYTEST) tests/unit

# The openai SDK, installed from its lockfile
tests/sdk/node_modules: tests/sdk/package-lock.json
	cd tests/sdk && npm ci --no-audit --no-fund
	@touch $@

sdk: all tests/sdk/node_modules
	$(PYTEST) tests/integration/test_sdk.py

integration: all tests/sdk/node_modules
	$(PYTEST) tests/integration

# Installs missing Debian packages (needs root or sudo); a no-op when all are there
deps:
	scripts/deps --test

#  Every stage runs to its end; the last line is the verdict: N passed, N failed
test: deps
	$(MAKE) all tests/sdk/node_modules tests/bench/portkey/node_modules $(HELM_RENDER)
	@MAKE="$(MAKE)" /usr/bin/python3 tests/run.py

# The Helm chart's renderer (tests/deploy/helm-render), Go in GOPATH mode on
# Debian's packages: text/template, sprig, yaml
HELM_RENDER := $(BUILD)/bin/helm-render
$(HELM_RENDER): tests/deploy/helm-render/main.go
	@mkdir -p $(dir $@) $(BUILD)/gopath
	GO111MODULE=off GOPATH=$(CURDIR)/$(BUILD)/gopath:/usr/share/gocode GOCACHE=$(CURDIR)/$(BUILD)/gocache \
	  go build -o $@ ./tests/deploy/helm-render

# The deployment files without a cluster (tests/deploy): the chart rendered
# and validated, its workloads run; promtool on the alert rules; the
# dashboard's metrics against a running mesh
deploy-check: all $(HELM_RENDER)
	$(PYTEST) tests/deploy

# The benchmark (BENCH.md): make bench writes tests/bench/results/<date>.md
# and .json; bench-smoke runs every step briefly into build/bench-smoke
tests/bench/portkey/node_modules: tests/bench/portkey/package-lock.json
	cd tests/bench/portkey && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

bench: all tests/bench/portkey/node_modules
	/usr/bin/python3 tests/bench/bench.py

bench-smoke: all tests/bench/portkey/node_modules
	/usr/bin/python3 tests/bench/bench.py --smoke --out $(BUILD)/bench-smoke

# The same integration tests against an AddressSanitizer + UBSan build; the
# harness fails a test whose processes logged a sanitizer report
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan:
	$(MAKE) BUILD=build-asan OPT="$(ASAN_FLAGS)" all
	build-asan/bin/mesh-selftest
	SEEKMESH_BIN=$(CURDIR)/build-asan/bin MOCK_BINARY=$(CURDIR)/build-asan/bin/seekmesh-mock \
	  SEEKMESH_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:quarantine_size_mb=32 \
	  $(PYTEST) tests/integration

# The compose file for real (tests/compose): podman builds the image (from a
# debootstrapped base unless SEEKMESH_BASE_IMAGE names one), Debian's
# docker-compose runs the mesh through podman's API, clients load it while
# services are scaled, restarted and killed, then `down -v`
compose-deps:
	scripts/deps --compose

compose-test: compose-deps
	$(MAKE) tests/sdk/node_modules
	$(PYTEST) -s tests/compose

run:
	scripts/run

# examples/analyst: the data-analysis assistant (Python 3's standard library,
# Debian's python3-psycopg2 for PostgreSQL).  ANALYST_ARGS passes options.
ANALYST := /usr/bin/python3 examples/analyst/bin/analyst
analyst:
	$(ANALYST) serve $(ANALYST_ARGS)

analyst-eval: all
	$(ANALYST) eval $(ANALYST_ARGS)

analyst-load: all
	/usr/bin/python3 tests/bench/analyst_load.py $(ANALYST_ARGS)

# Its own tests (the guard, charts, the repair round, PostgreSQL); the
# evaluation through a mesh and the browser test are in tests/integration
analyst-test: all
	$(PYTEST) tests/analyst

clean:
	rm -rf build build-asan build-fuzz

-include tests/fuzz/fuzz.mk
