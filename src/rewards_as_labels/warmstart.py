"""Supervised warm start of the tiny policy, stopped early on purpose.

The paper starts RL from DeepSeek-R1-Distill-Qwen, a model that already solves a fair
share of its training problems. A randomly initialised model never samples a correct
answer, so every group would be all-wrong and carry no signal. We therefore fit the tiny
Qwen2 on the ``sft`` split just long enough that held-out pass@1 is low but pass@8 is
clearly higher: right answers are in the sampling distribution, RL has room to promote them.

Recipe (measured on the tiny profile, see ``shared/MEASURED.md``):
    AdamW, lr ``warmstart_lr`` (2e-3) with ``warmstart_warmup`` (100) linear warm-up steps,
    then constant; betas (0.9, 0.98); weight decay ``warmstart_weight_decay`` (0.01) on all
    parameters; gradient norm clipped at 1.0; ``warmstart_batch_size`` (128) problems per
    step; cross-entropy on the answer and EOS tokens only (the prompt is given, not
    predicted); ``warmstart_steps`` (500) steps.

Measured here (tiny profile, 1 thread, ``write_splits`` then ``warmstart``): validation
pass@1 0.279, pass@8 0.615, greedy 0.340 after 500 steps; 52 s of training on a quiet
2-core machine (105 s under load), 1-3 s of evaluation; a rerun is bit-identical. That
pass@1 is above the throw-away experiment's 16% (pass@8 59%) at step 500; we have not
isolated why (it drew fresh problems each step, we walk a fixed split whose level mix
differs, see ``task.py``). It is still well inside the useful 10-60% window.

Choices and deviations:
1) One base model per profile, shared by every RL run and method, so it is seeded from
   ``cfg.data_seed`` (a property of the data), not from the run's ``cfg.seed``.
2) Batches walk through shuffled passes over the fixed ``sft`` split (the throw-away
   experiment drew fresh problems each step; the split holds 40k, about 1.6 passes).
3) Training sequences are right-padded with the default positions 0, 1, ...; for the real
   tokens this equals the positions ``generate`` uses after left padding.
4) The model folder is the completion marker: it is written atomically (temp folder +
   rename) after ``metrics.json``, and its presence makes a later call skip training.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
import transformers
from tqdm.auto import tqdm

from .evaluation import evaluate_policy
from .io import atomic_directory, atomic_write_json
from .modeling import build_tiny_model, build_tokenizer, count_parameters
from .task import load_split

WARMSTART_BETAS = (0.9, 0.98)
WARMSTART_CLIP = 1.0
IGNORE = -100  # label id that transformers' causal-LM loss skips


def encode_supervised(tokenizer, problems) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``prompt + answer + EOS`` with labels on the answer and EOS only.

    >>> from rewards_as_labels.modeling import build_tokenizer
    >>> from rewards_as_labels.task import Problem
    >>> ids, mask, labels = encode_supervised(build_tokenizer(), [Problem("x", "1+2", "1+2=", "3", 1)])
    >>> ids.shape, labels.tolist()
    (torch.Size([1, 6]), [[-100, -100, -100, -100, 6, 1]])
    """
    rows, label_rows = [], []
    for p in problems:
        prompt = tokenizer(p.prompt, add_special_tokens=False).input_ids
        answer = tokenizer(p.answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
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
    (loss curve, validation pass@1 / pass@8 / greedy, seconds). Skips when ``model/``
    exists unless ``force``.
    """
    out_dir = Path(cfg.warmstart_dir)
    model_dir = out_dir / "model"
    if (model_dir / "config.json").is_file() and not force:
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
    bar = tqdm(batches, total=cfg.warmstart_steps, desc="warmstart", mininterval=2.0)
    for index in bar:
        ids, mask, labels = encode_supervised(tokenizer, [sft[i] for i in index.tolist()])  # [B, T] each
        # transformers shifts labels internally and averages over non-ignored tokens
        loss = model(input_ids=ids.to(cfg.device), attention_mask=mask.to(cfg.device), labels=labels.to(cfg.device)).loss
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
        model, tokenizer, validation, samples=8, temperature=1.0,
        max_new_tokens=cfg.max_new_tokens, seed=cfg.data_seed,
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
        "config": {k: v for k, v in cfg.to_dict().items() if k.startswith("warmstart_") or k in (
            "profile", "data_seed", "hidden_size", "num_layers", "num_heads", "intermediate_size",
            "num_threads", "max_new_tokens", "operand_digits", "operations", "n_sft")},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    with atomic_directory(model_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return model_dir


def cmd_warmstart(cfg, force: bool = False) -> Path:
    """CLI entry point of ``make warmstart``: train or reuse, then print the headline numbers."""
    model_dir = warmstart(cfg, force=force)
    metrics_path = model_dir.parent / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        s = m["summary"]
        print(
            f"warmstart: {model_dir} validation pass@1={s['pass@1']:.3f} pass@8={s['pass@8']:.3f} "
            f"greedy={s['greedy']:.3f} ({m['seconds']['train']:.0f}s train, {m['seconds']['eval']:.0f}s eval)"
        )
    return model_dir
