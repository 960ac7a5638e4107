# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python
PIP ?= $(PYTHON) -m pip
export NO_ALBUMENTATIONS_UPDATE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-test demo test test-fast clean

install:
	$(PIP) install -q -e .

install-test:
	$(PIP) install -q -e ".[test]"

# OmniFD, ACR, CVLNM, STATE and HybridNet on built-in synthetic data (fit, test, infer; STATE: fit, test), then one
# leaderboard with a row per system (`polyvision demo --system NAME` runs one).
demo: install
	$(PYTHON) -m polyvision.cli demo

# Two workers on two cores (tests/conftest.py says why); `-n 0` runs in one process.
test: install-test
	$(PYTHON) -m pytest -n 2 --durations=25

test-fast: install-test
	$(PYTHON) -m pytest -n 2 -m "not slow"

clean:
	rm -rf runs demo_outputs inference .pytest_cache build *.egg-info
