# The two commands of the README:
#   make demo   run the embedded demo (digits, small ViT) with snakemake --cores 2
#   make test   run the test suite
# Both create .venv (Python >= 3.11) on first use and install with constraints.txt,
# which pins the CPU torch and its torchvision; later calls reuse .venv. The install
# runs through uv (from PyPI into .venv): the same versions as pip, faster. uv does not read
# pip's settings, so pip's find-links (a local wheel directory, e.g. for the CPU torch) are passed
# on; it compiles the bytecode as pip does (where PYTHONDONTWRITEBYTECODE is set, every job would
# otherwise compile torch's modules). Measurements: docs/scaling.md.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
FIND_LINKS := $(foreach dir,$(PIP_FIND_LINKS),--find-links $(dir))

.PHONY: demo test lint format benchmarks gpu-check explorer-check clean-demo

$(BIN)/snakemake: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python $(FIND_LINKS) -c constraints.txt -e ".[dev]"
	touch $@

# The scheduler and other defaults of every run: profiles/default/config.yaml.
demo: $(BIN)/snakemake
	$(BIN)/snakemake --cores $(CORES)

# Every test file on one of three workers, the longest first (tests/conftest.py: LONGEST_FILES). The
# Slurm tests mostly wait on the scheduler, so they run beside the rest; their files share the cluster.
# (A fourth worker, for the Slurm files to start together, made CI slower: the machine is CPU-bound.)
test: $(BIN)/snakemake
	$(BIN)/python -m pytest -ra --durations=10 -n 3 --dist loadfile --no-loadscope-reorder

lint: $(BIN)/snakemake
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint
	$(BIN)/lint-imports

format: $(BIN)/snakemake
	$(BIN)/ruff check --fix . && $(BIN)/ruff format . && $(BIN)/snakefmt Snakefile rules/

benchmarks: $(BIN)/snakemake
	$(BIN)/python benchmarks/bench_attention_capture.py
	$(BIN)/python benchmarks/bench_interaction.py
	$(BIN)/python benchmarks/bench_store_rounding.py
	$(BIN)/python benchmarks/bench_head_pruning.py --naive-share 0.1
	$(BIN)/python benchmarks/bench_tsne.py
	$(BIN)/python benchmarks/bench_semantics.py
	$(BIN)/python benchmarks/bench_masked_training.py
	$(BIN)/python benchmarks/bench_flex_attention.py
	$(BIN)/python benchmarks/bench_job_start.py

# Every branch's training step, attention capture and streaming U on the device found
# (CUDA: ViT-B/16, bf16 autocast; CPU: a tiny ViT in float32). Fails on any error or NaN.
gpu-check: $(BIN)/snakemake
	$(BIN)/python benchmarks/gpu_check.py

# The demo's explorer pages in headless Chromium (apt install chromium chromium-driver): seconds until
# each is interactive, sizes, console errors; a screenshot of the last one.
explorer-check: $(BIN)/snakemake
	$(BIN)/python tests/browser.py results/*/explorer/index.html --screenshot results/explorer.png

clean-demo:
	rm -rf results .snakemake
