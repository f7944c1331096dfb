# Two commands do all the set-up on a fresh machine: `make bench` and `make test`.
# The virtual environment is created or refreshed on first use (stamp file .venv/.stamp,
# rebuilt when pyproject.toml changes).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

METHOD     ?= proto
DATASET    ?= synthetic
SHOT       ?= 1
FOLD       ?= all
ANNOTATION ?= mask
EPISODES   ?=
PROTOCOL   ?=
ARGS       ?=
# End-to-end anchors run beside the method on the same episodes: oracle must score 100 and
# empty 0, so the leaderboard shows where the method sits. On by default for synthetic.
ANCHORS    ?= $(if $(filter synthetic,$(DATASET)),oracle empty,)

BENCH_ARGS := method=$(METHOD) dataset=$(DATASET) shot=$(SHOT) fold=$(FOLD) annotation=$(ANNOTATION) \
	$(if $(EPISODES),episodes=$(EPISODES)) $(if $(PROTOCOL),protocol=$(PROTOCOL)) $(ARGS)

.PHONY: bench train test test-all regress perf leaderboard lint clean venv

venv: $(STAMP)

# torch first (the standard CUDA-enabled wheels: torchvision has no CPU-only build on the
# registry), then sam2 without build isolation so it does not download a second torch,
# then this package in editable mode.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q "torch>=2.3" "torchvision>=0.18"
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install -q --no-build-isolation "sam2==1.1.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/refseg-bench run $(BENCH_ARGS)
	for m in $(ANCHORS); do $(BIN)/refseg-bench run $(BENCH_ARGS) method=$$m || exit 1; done
	$(BIN)/refseg-bench leaderboard

train: $(STAMP)
	$(BIN)/refseg-bench train method=$(METHOD) dataset=$(DATASET) fold=$(if $(filter all,$(FOLD)),0,$(FOLD)) annotation=$(ANNOTATION) $(ARGS)

leaderboard: $(STAMP)
	$(BIN)/refseg-bench leaderboard

test: $(STAMP)
	$(BIN)/pytest -q $(ARGS)

# Slow and GPU tests too (GPU tests skip themselves without CUDA).
test-all: $(STAMP)
	$(BIN)/pytest -q -m "" $(ARGS)

# Every method's tiny configuration on a sampled synthetic run, compared episode by episode
# with configs/goldens (exact, CPU). Accept an intended change: make regress ARGS=--update
regress: $(STAMP)
	$(BIN)/refseg-bench regress $(ARGS)

# Every benchmark under benchmarks/ with short settings (ARGS="--full" for their defaults,
# ARGS="--only vs_official" for one), then one table of headline ratios and targets.
# Official comparisons need PERSAM_OFFICIAL_DIR / VRPSAM_OFFICIAL_DIR /
# MATCHER_OFFICIAL_DIR / FSSAM_OFFICIAL_DIR (else skipped).
perf: $(STAMP)
	$(BIN)/python benchmarks/perf_summary.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check refseg_bench methods datasets tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
