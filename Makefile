# make test / make demo / make bench / make fuzz each create .venv if it is missing and install everything
# (uncollapse with its torch and hf extras, and the test tools: the dev extra).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

FUZZ_SECONDS ?= 600
FUZZ_OUT ?= fuzz-out

.PHONY: install test fuzz demo bench zoo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The torch extra with no torch present would pull a multi-GB CUDA build: install the CPU
	# build first, then everything the tests use (the torch and hf extras and the test tools).
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0 || \
	  $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check uncollapse tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --dist loadfile

# Every fuzz target for its share of FUZZ_SECONDS, then every test marked `fuzz` (long kill-point
# runs); failing inputs and per-target numbers land in FUZZ_OUT (fuzz/README.md).
fuzz: $(STAMP)
	rm -rf $(FUZZ_OUT)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_OUT=$(abspath $(FUZZ_OUT)) $(PY) -m pytest -q -m fuzz fuzz tests; \
	  status=$$?; $(PY) -m fuzz.stats $(FUZZ_OUT); exit $$status

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash demo/run.sh

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

# The collapse zoo: runs broken the way real projects break them (and healthy ones), each
# diagnosed by `uncollapse doctor`; prints the confusion matrix of the top-ranked cause.
zoo: $(STAMP)
	$(PY) benchmarks/collapse_zoo.py

clean:
	rm -rf demo-out .pytest_cache .ruff_cache fuzz-out
