# The two commands: `make report` and `make test`. Each builds .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; elsewhere add PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
REPORT_ARGS ?=

.PHONY: report test test-torchvision quick-report bench clean-venv mutation docs

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet $(PIP_TORCH_ARGS) "$(TORCH_SPEC)"
	# fast-slic compiles against the numpy and Cython already in the venv
	$(PY) -m pip install --quiet cython numpy
	$(PY) -m pip install --quiet --no-build-isolation fast-slic
	$(PY) -m pip install --quiet -e ".[test]"
	# Debian's chromium renders the report page in one test; skipped where it cannot be installed
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium could not be installed: the page-rendering test will be skipped"
	touch $@

report: $(VENV)/.installed
	$(VENV)/bin/stablesal report --config experiments/default.toml $(REPORT_ARGS)

quick-report: $(VENV)/.installed
	$(VENV)/bin/stablesal report --quick $(REPORT_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The real torchvision in its own environment: PyPI's torchvision does not import beside the CPU build
# of torch above, so this pairs it with the torch release it was built for (a CUDA build that also runs
# on the CPU; pip takes both from the machine's wheel cache where there is one). .ci/run calls it.
TV_VENV ?= .venv-torchvision
TV_SPEC ?= torch==2.14.1 torchvision==0.29.1

$(TV_VENV)/.installed: pyproject.toml Makefile
	test -x $(TV_VENV)/bin/python || $(PYTHON) -m venv $(TV_VENV)
	$(TV_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(TV_VENV)/bin/python -m pip install --quiet $(TV_SPEC)
	$(TV_VENV)/bin/python -m pip install --quiet cython numpy
	$(TV_VENV)/bin/python -m pip install --quiet --no-build-isolation fast-slic
	$(TV_VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $@

test-torchvision: $(TV_VENV)/.installed
	STABLESAL_REQUIRE_TORCHVISION=1 $(TV_VENV)/bin/python -m pytest -q tests/models/test_torchvision.py

# The documentation site from docs/ (mkdocs.yml; strict: a warning fails), then its checks with the
# generator present (tests/test_docs_site.py skips the build where mkdocs is not installed).
docs: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[docs]"
	$(VENV)/bin/mkdocs build --strict --quiet
	STABLESAL_REQUIRE_MKDOCS=1 $(PY) -m pytest -q tests/test_docs_site.py

bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[bench]"
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV) $(TV_VENV)

# Mutation testing of the formula modules (see [tool.mutmut] in pyproject.toml); not part of `make test`.
# One thread per test process: mutmut forks, and a forked OpenMP pool can hang.
mutation: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[mutation]"
	rm -rf mutants
	STABLESAL_TEST_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2 > /dev/null || true
	$(PY) analysis/mutation_report.py
