# tests/fuzz/fuzz.mk: a fuzz target for every parser, included by the
# top-level Makefile; it needs nothing from it but $(CC).
#
#   make fuzz-build   build every target: with clang, libFuzzer binaries
#                     build-fuzz/fuzz_<t> (ASan + UBSan); without it,
#                     build-fuzz/replay_<t>: $(CC), replay.c, and ASan + UBSan
#                     when they link
#   make fuzz         replay every seed corpus tests/fuzz/corpus/<t> once,
#                     one line per target (part of make test)
#   make fuzz-run     fuzz each target FUZZ_SECONDS (60) on a writable copy of
#                     its corpus, build-fuzz/corpus/<t>; reports the new
#                     crash-*, leak-*, timeout-* and oom-* files (needs clang;
#                     make -j2 fuzz-run runs two at a time)
#   make fuzz-merge   add the inputs fuzz-run found that add coverage to the
#                     seed corpora (libFuzzer -merge=1 keeps it minimal)
#   make fuzz-seeds   rewrite the hand-made seeds (tests/fuzz/make_seeds.py)
#
#   FUZZ_ENGINE=replay  use the replay build even where clang is installed
#   FUZZ_FLAGS=...      more libFuzzer flags for fuzz-run (-max_len=8192,
#                       -use_value_profile=1); tests/fuzz/dict/ is used already

FUZZ_TARGETS := http_request http_response http_chunked sse ws_sse msg audit keys completion validate config \
                replay wordfilter wordchunk filters history canon faq cache_entry

#  The service sources a target needs besides common/ and proto/
FUZZ_SRC_validate := services/ingress/ingress_validate.c
FUZZ_SRC_config   := services/router/router_keys.c
FUZZ_SRC_replay   := services/mock/mock_replay.c
FUZZ_SRC_history  := services/router/router_history.c
FUZZ_SRC_cache_entry := services/cache/cache_entry.c

#  libFuzzer dictionaries for fuzz-run (tests/fuzz/dict/)
FUZZ_DICT_http_request  := http
FUZZ_DICT_http_response := http
FUZZ_DICT_http_chunked  := http
FUZZ_DICT_sse           := sse
FUZZ_DICT_ws_sse        := sse
FUZZ_DICT_validate      := validate
FUZZ_DICT_config        := config
FUZZ_DICT_wordfilter    := wordfilter
FUZZ_DICT_wordchunk     := wordchunk
FUZZ_DICT_canon         := validate
FUZZ_DICT_faq           := validate
FUZZ_DICT_cache_entry   := validate

FUZZ_DIR     := tests/fuzz
FUZZ_OUT     := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?=
FUZZ_CLANG   ?= clang
ifndef FUZZ_ENGINE
FUZZ_ENGINE  := $(if $(shell command -v $(FUZZ_CLANG) 2>/dev/null),libfuzzer,replay)
endif

#  Evaluated once, and only by recipes that need them
FUZZ_PKGS        := libzmq libczmq libwebsockets msgpack jansson libssl libcrypto hiredis sqlite3
FUZZ_PKG_CFLAGS   = $(eval FUZZ_PKG_CFLAGS := $(shell pkg-config --cflags $(FUZZ_PKGS) 2>/dev/null))$(FUZZ_PKG_CFLAGS)
FUZZ_PKG_LIBS     = $(eval FUZZ_PKG_LIBS := $(shell pkg-config --libs $(FUZZ_PKGS) 2>/dev/null))$(FUZZ_PKG_LIBS)
FUZZ_SANITIZE    := -fsanitize=address,undefined -fno-sanitize-recover=all
#  The replay build uses the sanitizers only if $(CC) can link them
FUZZ_REPLAY_SAN   = $(eval FUZZ_REPLAY_SAN := $(shell d=$$(mktemp -d) \
                      && printf 'int main (void) { return 0; }\n' > $$d/t.c \
                      && $(CC) $(FUZZ_SANITIZE) $$d/t.c -o $$d/t >/dev/null 2>&1 \
                      && echo '$(FUZZ_SANITIZE)'; rm -rf $$d))$(FUZZ_REPLAY_SAN)

FUZZ_WARNINGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
                 -Wpointer-arith -Wcast-qual
FUZZ_CFLAGS    = -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $(FUZZ_WARNINGS) \
                 -Icommon -Iproto -Iservices $(FUZZ_PKG_CFLAGS)
FUZZ_LIBS      = $(FUZZ_PKG_LIBS) -lpthread -lm

FUZZ_LIB_SRC  := $(wildcard common/*.c) $(wildcard proto/*.c)
FUZZ_LF       := $(FUZZ_OUT)/obj-libfuzzer
FUZZ_RP       := $(FUZZ_OUT)/obj-replay

ifeq ($(FUZZ_ENGINE),libfuzzer)
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_OUT)/fuzz_%)
else
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_OUT)/replay_%)
endif

.PHONY: fuzz fuzz-build fuzz-run fuzz-merge fuzz-seeds $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz-build: $(FUZZ_BINS)

#  libFuzzer: everything instrumented for coverage, the engine linked last
$(FUZZ_LF)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SANITIZE) -MMD -MP -c $< -o $@

$(FUZZ_LF)/libmesh.a: $(FUZZ_LIB_SRC:%.c=$(FUZZ_LF)/%.o)
	@rm -f $@
	ar rcs $@ $^

#  Replay: any C11 compiler
$(FUZZ_RP)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_CFLAGS) $(FUZZ_REPLAY_SAN) -MMD -MP -c $< -o $@

$(FUZZ_RP)/libmesh.a: $(FUZZ_LIB_SRC:%.c=$(FUZZ_RP)/%.o)
	@rm -f $@
	ar rcs $@ $^

define FUZZ_TARGET_RULE
$(FUZZ_OUT)/fuzz_$(1): $(FUZZ_LF)/$(FUZZ_DIR)/fuzz_$(1).o $(FUZZ_SRC_$(1):%.c=$(FUZZ_LF)/%.o) $(FUZZ_LF)/libmesh.a
	$$(FUZZ_CLANG) -fsanitize=fuzzer $$(FUZZ_SANITIZE) -o $$@ $$^ $$(FUZZ_LIBS)

$(FUZZ_OUT)/replay_$(1): $(FUZZ_RP)/$(FUZZ_DIR)/fuzz_$(1).o $(FUZZ_RP)/$(FUZZ_DIR)/replay.o \
                         $(FUZZ_SRC_$(1):%.c=$(FUZZ_RP)/%.o) $(FUZZ_RP)/libmesh.a
	$$(CC) $$(FUZZ_REPLAY_SAN) -o $$@ $$^ $$(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_TARGET_RULE,$(t))))

-include $(shell find $(FUZZ_OUT) -name '*.d' 2>/dev/null)

#  Replays each corpus once: every input must pass, with no crash, leak,
#  hang (25 s) or sanitizer report
fuzz: fuzz-build
	@mkdir -p $(FUZZ_OUT)/log $(FUZZ_OUT)/artifacts
	@fail=0; for t in $(FUZZ_TARGETS); do \
	    dir=$(FUZZ_DIR)/corpus/$$t; log=$(FUZZ_OUT)/log/$$t.replay.log; \
	    n=$$(find $$dir -maxdepth 1 -type f 2>/dev/null | wc -l); \
	    if [ $$n -eq 0 ]; then \
	        echo "fuzz $$t: no seed corpus in $$dir"; fail=1; continue; \
	    fi; \
	    if [ "$(FUZZ_ENGINE)" = libfuzzer ]; then \
	        $(FUZZ_OUT)/fuzz_$$t -runs=0 -timeout=25 -artifact_prefix=$(FUZZ_OUT)/artifacts/$$t- \
	            $$dir >$$log 2>&1; \
	    else \
	        $(FUZZ_OUT)/replay_$$t $$dir >$$log 2>&1; \
	    fi; rc=$$?; \
	    if [ $$rc -eq 0 ]; then \
	        printf 'fuzz %-14s ok    %4d inputs replayed (%s)\n' $$t $$n $(FUZZ_ENGINE); \
	    else \
	        printf 'fuzz %-14s FAIL  exit %d on its corpus, log %s\n' $$t $$rc $$log; \
	        tail -n 40 $$log | sed 's/^/    /'; fail=1; \
	    fi; \
	done; exit $$fail

#  Longer runs, for a human: make -j2 fuzz-run FUZZ_SECONDS=600
$(FUZZ_TARGETS:%=fuzz-run-%): fuzz-run-%: fuzz-build
	@if [ "$(FUZZ_ENGINE)" != libfuzzer ]; then \
	    echo "fuzz-run needs clang with libFuzzer (apt-get install clang libclang-rt-14-dev)"; exit 1; fi
	@mkdir -p $(FUZZ_OUT)/corpus/$* $(FUZZ_OUT)/artifacts/$* $(FUZZ_OUT)/log
	@cp -n $(FUZZ_DIR)/corpus/$*/* $(FUZZ_OUT)/corpus/$*/ 2>/dev/null || true
	@touch $(FUZZ_OUT)/artifacts/$*/.started
	@echo "fuzz-run $*: $(FUZZ_SECONDS) s, log $(FUZZ_OUT)/log/$*.run.log"
	@$(FUZZ_OUT)/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -timeout=25 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_OUT)/artifacts/$*/ \
	    $(if $(FUZZ_DICT_$*),-dict=$(FUZZ_DIR)/dict/$(FUZZ_DICT_$*).dict) $(FUZZ_FLAGS) $(FUZZ_OUT)/corpus/$* \
	    >$(FUZZ_OUT)/log/$*.run.log 2>&1 || true

fuzz-run: $(FUZZ_TARGETS:%=fuzz-run-%)
	@found=0; for t in $(FUZZ_TARGETS); do \
	    log=$(FUZZ_OUT)/log/$$t.run.log; \
	    last=$$(grep -E '^#[0-9]+' $$log | tail -n 1); \
	    new=$$(find $(FUZZ_OUT)/artifacts/$$t -newer $(FUZZ_OUT)/artifacts/$$t/.started -type f \
	           \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort); \
	    printf 'fuzz-run %-14s %s\n' $$t "$$last"; \
	    for f in $$new; do echo "    NEW FINDING $$f"; found=1; done; \
	    if [ -n "$$new" ]; then grep -E -m 3 'ERROR|property broken|SUMMARY' $$log | sed 's/^/    /'; fi; \
	done; \
	if [ $$found -eq 1 ]; then echo "fuzz-run: findings above; add each to tests/fuzz/corpus/<t>/"; exit 1; fi

#  Keeps what fuzz-run found that adds coverage, smallest inputs first
fuzz-merge: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    [ -d $(FUZZ_OUT)/corpus/$$t ] || continue; \
	    before=$$(ls $(FUZZ_DIR)/corpus/$$t | wc -l); \
	    $(FUZZ_OUT)/fuzz_$$t -merge=1 $(FUZZ_DIR)/corpus/$$t $(FUZZ_OUT)/corpus/$$t \
	        >$(FUZZ_OUT)/log/$$t.merge.log 2>&1 || { echo "fuzz-merge $$t failed"; exit 1; }; \
	    after=$$(ls $(FUZZ_DIR)/corpus/$$t | wc -l); \
	    echo "fuzz-merge $$t: $$before -> $$after inputs"; \
	done

fuzz-seeds:
	python3 $(FUZZ_DIR)/make_seeds.py $(FUZZ_DIR)/corpus
