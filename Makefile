# make test / make demo / make docs / make bench / make fuzz each create .venv if it is missing and
# install everything (uncollapse with its torch and hf extras, and the test tools: the dev extra).
# The install takes a few minutes the first time (torch is the largest download); each step says
# what it is doing before it starts.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# mkdocs-material prints a banner about its successor on every build
export NO_MKDOCS_2_WARNING := 1

FUZZ_SECONDS ?= 600
FUZZ_OUT ?= fuzz-out

.PHONY: install test docs fuzz demo bench zoo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@echo "make: setting up $(VENV) (first run, or pyproject.toml changed): a few minutes"
	test -x $(PY) || python3 -m venv $(VENV)
	@echo "make: upgrading pip in $(VENV)"
	$(PY) -m pip install -q --upgrade pip
	# The torch extra with no torch present would pull a multi-GB CUDA build: install the CPU
	# build first, then everything the tests use (the torch and hf extras and the test tools).
	@echo "make: installing torch (the CPU build, unless one is installed): the largest download"
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0 || \
	  $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	@echo "make: installing uncollapse with the dev extra (every extra, the test tools, mkdocs, playwright)"
	$(PY) -m pip install -q -e '.[dev]'
	@echo "make: $(VENV) is ready"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check uncollapse tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mkdocs build --strict --site-dir site
	$(PY) -m pytest -q -n 2 --dist loadfile

# The documentation site, from docs/ and mkdocs.yml, into site/ (open site/index.html).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

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
	rm -rf demo-out site tour scratch .pytest_cache .ruff_cache fuzz-out
