# Two commands for a newcomer: `make demo` and `make test`. Both install what is missing first;
# with everything in place, setup takes seconds.

VENV    := .venv
PY      := $(VENV)/bin/python
STAMPS  := .setup-stamps
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: emcc links model libraries, chromium runs them headless on WebGPU, and
# mesa-vulkan-drivers (lavapipe) gives Deno a WebGPU adapter with shader-f16 on any CPU.
APT_PKGS := emscripten chromium nodejs npm mesa-vulkan-drivers

.PHONY: setup system python web runtime demo test lint bench clean

setup: system python web runtime

system:
	@missing=""; \
	command -v emcc >/dev/null     || missing="$$missing emscripten"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null     || missing="$$missing nodejs"; \
	command -v npm >/dev/null      || missing="$$missing npm"; \
	ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || missing="$$missing mesa-vulkan-drivers"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

python: $(STAMPS)/python
$(STAMPS)/python: pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 is missing: apt-get install python3 python3-venv"; exit 1; }
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@mkdir -p $(STAMPS) && touch $@

web: web/dist/webllm_build.js
web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
web/dist/webllm_build.js: web/node_modules/.package-lock.json web/build.mjs web/tsconfig.json $(wildcard web/src/*.ts web/src/*/*.ts)
	cd web && npx --no-install tsc -p . && node build.mjs

runtime: python system
	@$(VENV)/bin/webllm_build runtime >/dev/null

# The default site (SmolLM2-135M, offline). At a terminal it is then served until Ctrl-C;
# run from a script or CI it is only built, so `make demo && make test` never blocks.
demo: setup
	$(VENV)/bin/webllm_build site --out dist
	@if [ -t 0 ] && [ -z "$$CI" ]; then \
	  echo "Open http://127.0.0.1:8000/ in a browser with WebGPU (Chrome/Edge 113+, Safari 26+;"; \
	  echo "Chrome on Linux: --enable-unsafe-webgpu). Ctrl-C stops the server."; \
	  $(VENV)/bin/webllm_build serve dist; \
	else \
	  echo "Built dist/. Serve it with: $(VENV)/bin/webllm_build serve dist"; \
	fi

# pytest exits 5 when it collects nothing; that must fail, never pass quietly.
test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; fi; exit $$rc

lint: python
	$(VENV)/bin/ruff check webllm_build tests benchmarks

bench: setup
	$(PY) benchmarks/toolchain.py
	$(PY) benchmarks/compile.py
	$(PY) benchmarks/load.py

clean:
	rm -rf $(STAMPS) web/dist web/node_modules
