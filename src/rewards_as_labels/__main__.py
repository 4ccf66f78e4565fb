"""Command line: ``python -m rewards_as_labels <command> [--config FILE | --profile NAME] [--<field> VALUE ...]``.

Commands
    data       write the task's JSONL splits under ``data_dir``; cache every hub data set (download)
               and file (``--task`` / ``--eval_sets`` paths) named, printing problems kept and dropped
    warmstart  supervised warm start of the profile's base policy (cached under runs/<profile>/warmstart)
    train      RL training of one method and seed (``--resume`` continues from the latest checkpoint)
    bench      time each phase of one training step per method, and generation tokens/s
    test       the test evaluation of one finished run folder (``out=<folder>``), written to
               ``<folder>/test.json`` (sweep and protocol-study runs; ``make evaluate`` does the profile's)
    trl        RL training of one method and seed by TRL's GRPOTrainer, in each process of
               ``accelerate launch ... -m rewards_as_labels trl`` (``make train-trl``): the profile mapped
               onto GRPOConfig by one rule, run folder ``runs/<profile>/trl-<method>-s<seed>``
               (:mod:`rewards_as_labels.integrations.trl_run`); ``--dry-run`` prints the mapped fields

Any field of :class:`rewards_as_labels.config.Config` can be overridden, e.g.
``python -m rewards_as_labels train --profile tiny --method real --seed 0 --total_steps 2``. A profile
name is looked up in ``./configs/<name>.yaml`` first, then among the package's own profiles
(:func:`rewards_as_labels.config.profile_path`); ``--config FILE`` reads any YAML file.
"""

from __future__ import annotations

import argparse
import sys

from .config import load_config, parse_overrides

COMMANDS = ("data", "warmstart", "train", "bench", "test", "trl")


def parse(argv: list[str]):
    parser = argparse.ArgumentParser(
        prog="python -m rewards_as_labels",
        description=__doc__.split("\n")[0],
        epilog="Every Config field is also an option (--<field> VALUE or <field>=VALUE); "
        "`python -m rewards_as_labels.config --help` lists them with their types, defaults, choices and help.",
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--config", help="YAML profile file (default: the profile's, see --profile)")
    parser.add_argument(
        "--profile", default=None, help="profile name: ./configs/<name>.yaml, else the package's own (default tiny)"
    )
    parser.add_argument("--resume", action="store_true", help="train: continue from the latest checkpoint")
    parser.add_argument("--force", action="store_true", help="warmstart: retrain even if cached")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    trl = parser.add_argument_group("trl (TRL's GRPOTrainer; docs/scaling_out.md)")
    trl.add_argument(
        "--vllm-mode",
        default="colocate",
        choices=("colocate", "server"),
        help="with rollout_backend=vllm: vLLM inside each training process (colocate) or a `trl vllm-serve` "
        "server (server; multi-node)",
    )
    trl.add_argument("--vllm-server-base-url", default="", help="server mode: e.g. http://10.0.0.1:8000")
    trl.add_argument(
        "--trl",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a GRPOConfig field the mapping rule leaves to TRL (repeatable); one the rule sets is refused",
    )
    trl.add_argument("--dry-run", action="store_true", help="print the mapped GRPOConfig fields and stop")
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
    except ValueError as exc:
        parser.error(str(exc))
    if args.config is None and args.profile is None:
        args.profile = "tiny"
    cfg = load_config(args.config, overrides, profile=args.profile if args.config is None else None)
    return args, cfg


def main(argv: list[str] | None = None) -> int:
    try:
        args, cfg = parse(sys.argv[1:] if argv is None else argv)
        if args.command == "data":
            from .data import cmd_data

            cmd_data(cfg)
        elif args.command == "warmstart":
            from .warmstart import cmd_warmstart

            cmd_warmstart(cfg, force=args.force)
        elif args.command == "train":
            from .trainer import train

            print(train(cfg, resume=args.resume, progress=not args.no_progress))
        elif args.command == "test":
            from .evaluation import evaluate_run

            if not cfg.out:
                raise ValueError("test needs the run folder: out=<folder> (e.g. out=runs/tiny/sweep/<run>)")
            res = evaluate_run(cfg, cfg.out)
            print(", ".join(f"{name}: pass@1 {b['pass@1']:.3f}" for name, b in res["benchmarks"].items()))
        elif args.command == "trl":
            import os

            from .integrations.trl_run import describe, parse_trl_overrides, train_trl

            if args.dry_run:
                print(describe(cfg, int(os.environ.get("WORLD_SIZE", "1"))))
            else:
                print(
                    train_trl(
                        cfg,
                        progress=not args.no_progress,
                        vllm_mode=args.vllm_mode,
                        vllm_server_base_url=args.vllm_server_base_url,
                        trl_overrides=parse_trl_overrides(args.trl),
                    )
                )
        elif args.command == "bench":
            from .tools.bench import bench

            bench(cfg)
    except (ValueError, FileExistsError, FileNotFoundError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
