# Quick start: `make report` (the main job) and `make test` (every test).
# Both set up .venv first; torch is pinned to the CPU build by constraints.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv report test lint kernel-matrix kernel-matrix-quick clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[onnx,dev,jax,openvino]'
	touch $(STAMP)

report: $(STAMP)
	$(BIN)/netharness run --out netharness-report

# One worker per core (pytest-xdist), each test file on one worker (module fixtures run
# once), one BLAS/OpenMP thread per worker so the workers do not fight over the cores.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider -n auto --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The strict suite under each kernel selection this CPU supports: OpenBLAS core types, ATen's
# and oneDNN's instruction sets, 1 and 2 threads (docs/kernel-matrix.md). The quick one is the
# gate's: the arithmetic-sensitive checks on eager, numpy and jax under a few selections.
kernel-matrix: $(STAMP)
	$(BIN)/python tools/kernel_matrix.py

kernel-matrix-quick: $(STAMP)
	$(BIN)/python tools/kernel_matrix.py --quick

clean:
	rm -rf $(VENV) .netharness netharness-report .benchmarks
