"""Supervised warm start of the tiny policy, stopped early on purpose.

The paper starts RL from DeepSeek-R1-Distill-Qwen, a model that already solves a fair
share of its training problems. A randomly initialised model never samples a correct
answer, so every group would be all-wrong and carry no signal. We therefore fit the tiny
Qwen2 on the ``sft`` split just long enough that held-out pass@1 is low but pass@8 is
clearly higher: right answers are in the sampling distribution, RL has room to promote them.

Recipe (measured on the tiny profile before the package existed, see ``docs/measurements.md``):
    AdamW, lr ``warmstart_lr`` (2e-3) with ``warmstart_warmup`` (100) linear warm-up steps,
    then constant; betas (0.9, 0.98); weight decay ``warmstart_weight_decay`` (0.01) on all
    parameters; gradient norm clipped at 1.0; ``warmstart_batch_size`` (128) problems per
    step; cross-entropy on the answer and EOS tokens only (the prompt is given, not
    predicted); ``warmstart_steps`` (500) steps.

Measured here (tiny profile, 1 thread, ``write_splits`` then ``warmstart``): validation
pass@1 0.279, pass@8 0.615, greedy 0.340 after 500 steps; 52 s of training on a quiet
2-core machine (105 s under load), 1-3 s of evaluation; a rerun is bit-identical. That
pass@1 is above the throw-away experiment's 16% (pass@8 59%; docs/measurements.md) at step
500; we have not isolated why (it drew fresh problems each step, we walk a fixed split whose level mix
differs, see ``arithmetic.py``). It is still well inside the useful 10-60% window.

Choices and deviations:
1) One base model per profile, shared by every RL run and method, so it is seeded from
   ``cfg.data_seed`` (a property of the data), not from the run's ``cfg.seed``.
2) Batches walk through shuffled passes over the fixed ``sft`` split (the throw-away
   experiment drew fresh problems each step; the split holds 40k, about 1.6 passes).
3) Training sequences are right-padded with the default positions 0, 1, ...; for the real
   tokens this equals the positions ``generate`` uses after left padding.
4) The model folder is written atomically (temp folder + rename), then ``metrics.json``;
   ``metrics.json`` is the completion marker (``make warmstart``'s target, for trained
   and pretrained bases alike), and a later call skips training when both are there.
5) With ``model`` set (a pretrained model, e.g. SmolLM2 or DeepSeek-R1-Distill) there is
   nothing to warm-start -- the paper starts RL from the pretrained model itself -- so
   :func:`record_base` only evaluates it on the validation split and writes
   ``metrics.json`` (``base_model`` names it); no model folder is written, and RL loads
   ``model`` directly.
6) Both evaluate through the profile's rollout backend (``rollout_backend``: HF ``generate``
   or vLLM), the sampler the RL runs and ``make evaluate`` use, so base and trained models
   are measured the same way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .arithmetic import target_text
from .backends import make_backend
from .data import load_split
from .evaluation import evaluate_policy
from .io import atomic_directory, atomic_write_json, package_versions
from .modeling import build_tiny_model, build_tokenizer, count_parameters, format_prompt, load_policy
from .progress import progress_bar

WARMSTART_BETAS = (0.9, 0.98)
WARMSTART_CLIP = 1.0
IGNORE = -100  # label id that transformers' causal-LM loss skips


def encode_supervised(tokenizer, problems, targets=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``prompt + target + EOS`` with labels on the target and EOS only.

    ``targets``: the text to learn per problem (``arithmetic.target_text``); None = each answer.

    >>> from rewards_as_labels.modeling import build_tokenizer
    >>> from rewards_as_labels.data import Problem
    >>> ids, mask, labels = encode_supervised(build_tokenizer(), [Problem("x", "1+2", "1+2=", "3", 1)])
    >>> ids.shape, labels.tolist()
    (torch.Size([1, 6]), [[-100, -100, -100, -100, 6, 1]])
    """
    rows, label_rows = [], []
    targets = [p.answer for p in problems] if targets is None else targets
    for p, target in zip(problems, targets, strict=True):
        prompt = tokenizer(p.prompt, add_special_tokens=False).input_ids
        answer = tokenizer(target, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        rows.append(prompt + answer)
        label_rows.append([IGNORE] * len(prompt) + answer)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # [B, T]
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # [B, T]
    for i, (row, lab) in enumerate(zip(rows, label_rows)):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(row)] = 1
    return ids, mask, labels


def _batches(n_items: int, batch_size: int, steps: int, generator: torch.Generator):
    """Index batches from consecutive shuffled passes (a pass boundary may split a batch)."""
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        while len(order) < batch_size:
            order = torch.cat([order, torch.randperm(n_items, generator=generator)])
        yield order[:batch_size]
        order = order[batch_size:]


def warmstart(cfg, force: bool = False) -> Path:
    """Train (or reuse) the profile's warm-started model; return ``cfg.warmstart_dir / "model"``.

    Writes ``model/`` (``save_pretrained`` of model and tokenizer) and ``metrics.json``
    (loss curve, validation pass@1 / pass@8 / greedy, seconds). Skips when ``model/`` and
    ``metrics.json`` exist unless ``force``. With ``cfg.model`` set: :func:`record_base` (returns its metrics file).
    """
    if cfg.model:
        return record_base(cfg, force=force)
    out_dir = Path(cfg.warmstart_dir)
    model_dir = out_dir / "model"
    if (model_dir / "config.json").is_file() and (out_dir / "metrics.json").is_file() and not force:
        return model_dir
    torch.set_num_threads(cfg.num_threads)
    sft = load_split(cfg, "sft")
    validation = load_split(cfg, "validation")

    tokenizer = build_tokenizer()
    torch.manual_seed(cfg.data_seed)
    model = build_tiny_model(cfg, tokenizer).to(cfg.device)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.warmstart_lr, betas=WARMSTART_BETAS, weight_decay=cfg.warmstart_weight_decay
    )
    warmup = max(1, cfg.warmstart_warmup)
    # linear warm-up to the full lr over `warmup` steps, then constant
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    generator = torch.Generator().manual_seed(cfg.data_seed)

    losses: list[float] = []
    start = time.perf_counter()
    batches = _batches(len(sft), cfg.warmstart_batch_size, cfg.warmstart_steps, generator)
    bar = progress_bar(batches, total=cfg.warmstart_steps, desc="warmstart", mininterval=2.0)
    for index in bar:
        chosen = [sft[i] for i in index.tolist()]
        ids, mask, labels = encode_supervised(tokenizer, chosen, [target_text(cfg, p) for p in chosen])  # [B, T] each
        # transformers shifts labels internally and averages over non-ignored tokens
        loss = model(
            input_ids=ids.to(cfg.device), attention_mask=mask.to(cfg.device), labels=labels.to(cfg.device)
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), WARMSTART_CLIP)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    train_seconds = time.perf_counter() - start

    model.eval()
    start = time.perf_counter()
    result = evaluate_policy(
        model,
        tokenizer,
        validation,
        samples=8,
        temperature=cfg.eval_temperature,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.data_seed,
        backend=_backend(cfg, model, tokenizer, validation),
    )
    eval_seconds = time.perf_counter() - start
    summary = {k: result[k] for k in ("pass@1", "pass@8", "greedy")}
    metrics = {
        "steps": cfg.warmstart_steps,
        "loss": losses,
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        "validation": {k: v for k, v in result.items() if k not in ("per_problem_correct", "problem_ids")},
        "summary": summary,
        "seconds": {"train": train_seconds, "eval": eval_seconds},
        "parameters": count_parameters(model),
        "config": {
            k: v
            for k, v in cfg.to_dict().items()
            if k.startswith("warmstart_")
            or k
            in (
                "profile",
                "data_seed",
                "hidden_size",
                "num_layers",
                "num_heads",
                "intermediate_size",
                "num_threads",
                "max_new_tokens",
                "operand_digits",
                "operations",
                "solution_format",
                "n_sft",
            )
        },
        "versions": package_versions(),
    }
    with atomic_directory(model_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    atomic_write_json(out_dir / "metrics.json", metrics)  # last: marks the warm start complete
    return model_dir


def _backend(cfg, model, tokenizer, problems):
    """The run's rollout backend (``cfg.rollout_backend``), so that the base model is sampled the
    way the trained ones will be (deviation 6)."""
    return make_backend(cfg, model, tokenizer, prompts=[format_prompt(tokenizer, p, cfg) for p in problems])


def record_base(cfg, force: bool = False) -> Path:
    """The warm start of a pretrained ``cfg.model``: no training, only its validation numbers.

    Writes ``cfg.warmstart_dir / "metrics.json"`` (same layout as a trained warm start, with
    ``base_model`` and ``steps = 0``) and returns its path; reused while it names the same model.
    """
    path = Path(cfg.warmstart_dir) / "metrics.json"
    if path.is_file() and not force:
        old = json.loads(path.read_text())
        if old.get("base_model") == cfg.model and old.get("gguf_file", "") == cfg.gguf_file:
            return path
    model, tokenizer = load_policy(cfg)
    validation = load_split(cfg, "validation")[: cfg.eval_prompts]
    start = time.perf_counter()
    result = evaluate_policy(
        model,
        tokenizer,
        validation,
        samples=cfg.eval_samples,
        temperature=cfg.eval_temperature,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.data_seed,
        cfg=cfg,
        backend=_backend(cfg, model, tokenizer, validation),
    )
    k = cfg.eval_samples
    atomic_write_json(
        path,
        {
            "base_model": cfg.model,
            "gguf_file": cfg.gguf_file,
            "steps": 0,
            "validation": {k_: v for k_, v in result.items() if k_ not in ("per_problem_correct", "problem_ids")},
            "summary": {key: result[key] for key in ("pass@1", f"pass@{k}", "greedy")},
            "seconds": {"train": 0.0, "eval": time.perf_counter() - start},
            "parameters": count_parameters(model),
            "config": {
                key: v
                for key, v in cfg.to_dict().items()
                if key
                in (
                    "profile",
                    "model",
                    "gguf_file",
                    "task",
                    "prompt_template",
                    "chat_template",
                    "eval_prompts",
                    "eval_samples",
                    "eval_temperature",
                    "max_new_tokens",
                    "dtype",
                    "device",
                    "num_threads",
                )
            },
            "versions": package_versions(),
        },
    )
    return path


def cmd_warmstart(cfg, force: bool = False) -> Path:
    """CLI entry point of ``make warmstart``: train, reuse or record the base, then print the headline numbers."""
    done = warmstart(cfg, force=force)
    metrics_path = done if done.suffix == ".json" else done.parent / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        numbers = " ".join(f"{key}={v:.3f}" for key, v in m["summary"].items())
        print(
            f"warmstart: {m.get('base_model') or done} validation {numbers} "
            f"({m['seconds']['train']:.0f}s train, {m['seconds']['eval']:.0f}s eval)"
        )
    return done
