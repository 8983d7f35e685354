# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

# The test and benchmark reference, llama.cpp through llama-cpp-python, is built from source with
# explicit flags instead of natively: a native build on an Intel CPU with AMX (Sapphire Rapids class)
# compiles in ggml's AMX kernels, which crash on the first batched evaluation of a Q4_K_M model
# (llama.cpp issue 20824). scripts/llama_cpp_cmake_args.py turns GGML_NATIVE and AMX off and each
# AVX/AVX2/AVX-512 family on only where the CPU reports it. The wheel is kept in a folder named after
# those flags, so a machine with another CPU builds its own and a new .venv reuses it.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := $(shell python3 scripts/llama_cpp_cmake_args.py)
LLAMA_WHEELS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/codegemma/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(shell echo "$(LLAMA_CMAKE_ARGS)" | sha256sum | cut -c1-12)

.PHONY: run test test-all lint bench install install-test llama-cpp toolchains tabby-agent chromium clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0   # the local CPU wheel; an unpinned torch pulls a CUDA build
	$(PIP) install -q -e .
	touch $@

$(TEST_STAMP): $(STAMP) scripts/llama_cpp_cmake_args.py
	$(MAKE) llama-cpp
	$(PIP) install -q -e '.[test]'
	touch $@

# --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and would hand back a native build.
llama-cpp: $(STAMP)
	@echo "llama-cpp-python $(LLAMA_CPP_VERSION) with CMAKE_ARGS=$(LLAMA_CMAKE_ARGS)"
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel -q --no-deps --no-cache-dir -w $(LLAMA_WHEELS) \
		llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install -q --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(PIP) install -q $(LLAMA_WHEELS)/llama_cpp_python-*.whl

install: $(STAMP)
install-test: $(TEST_STAMP) tabby-agent

# Compilers for BabelCode's Go, Rust, C# and Kotlin (eval/babelcode/), called by absolute path from the
# sandbox, so never rustup's under /root, which its user nobody cannot run. Installed where missing, as
# root, from Debian and npm; where that cannot be done the languages' tests skip, naming what to install.
KOTLIN_COMPILER := 2.4.20
toolchains:
	@if [ "$$(id -u)" != 0 ]; then echo "toolchains: not root, nothing installed"; exit 0; fi; \
	missing=""; \
	test -x /usr/lib/go-1.19/bin/go || missing="$$missing golang-go"; \
	test -x /usr/bin/rustc || missing="$$missing rustc"; \
	test -x /usr/bin/mcs -a -x /usr/bin/mono || missing="$$missing mono-devel"; \
	if [ -n "$$missing" ]; then \
		echo "toolchains: apt-get install$$missing"; \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$$missing; } >/dev/null || echo "toolchains: could not install$$missing"; \
	fi; \
	test -x /usr/lib/node_modules/kotlin-compiler/bin/kotlinc || { echo "toolchains: npm install kotlin-compiler"; \
		npm install -g -q kotlin-compiler@$(KOTLIN_COMPILER) >/dev/null || echo "toolchains: could not install kotlin-compiler"; }

# Tabby's own agent (npm tabby-agent), which tests/test_tabby.py drives against our server over LSP; its
# test skips where npm cannot install it.
TABBY_AGENT := 1.5.0
NPM_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/codegemma/npm
tabby-agent:
	@test -f $(NPM_CACHE)/node_modules/tabby-agent/package.json || \
		npm install -q --no-audit --no-fund --prefix $(NPM_CACHE) tabby-agent@$(TABBY_AGENT) >/dev/null 2>&1 || \
		echo "tabby-agent: npm could not install tabby-agent@$(TABBY_AGENT); its test will skip"

# Debian's Chromium, which tests/test_learn_browser.py drives with Playwright (`playwright install` needs the
# network at test time). Installed where missing, as root; otherwise the test skips, naming the package.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	if [ "$$(id -u)" != 0 ]; then echo "chromium: not root, not installed; the browser test will skip"; \
	else echo "chromium: apt-get install chromium"; \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			-o DPkg::Lock::Timeout=600 chromium; } >/dev/null \
			|| echo "chromium: could not install chromium; the browser test will skip"; fi

run: $(STAMP)
	$(VENV)/bin/codegemma serve --model default --dtype bfloat16 --host 127.0.0.1 --port 8080

test: $(TEST_STAMP) toolchains tabby-agent chromium
	$(PY) -m pytest -q

test-all: $(TEST_STAMP) toolchains tabby-agent chromium
	$(PY) -m pytest -q -m "slow or not slow"

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check src tests bench scripts

bench: $(TEST_STAMP)
	$(PIP) install -q -e '.[test,bench]'
	for b in bench_core bench_gguf bench_server bench_repo bench_eval bench_data bench_train; do $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
