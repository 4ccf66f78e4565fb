"""Command line: ``python -m rewards_as_labels <command> [--config FILE | --profile NAME] [--<field> VALUE ...]``.

Commands
    data       write the task's JSONL splits under ``data_dir``; cache every hub data set (download)
               and file (``--task`` / ``--eval_sets`` paths) named, printing problems kept and dropped
    warmstart  supervised warm start of the profile's base policy (cached under runs/<profile>/warmstart)
    train      RL training of one method and seed (``--resume`` continues from the latest checkpoint)
    bench      time each phase of one training step per method, and generation tokens/s
    test       the test evaluation of one finished run folder (``out=<folder>``), written to
               ``<folder>/test.json`` (sweep and protocol-study runs; ``make evaluate`` does the profile's)

Any field of :class:`rewards_as_labels.config.Config` can be overridden, e.g.
``python -m rewards_as_labels train --profile tiny --method real --seed 0 --total_steps 2``. A profile
name is looked up in ``./configs/<name>.yaml`` first, then among the package's own profiles
(:func:`rewards_as_labels.config.profile_path`); ``--config FILE`` reads any YAML file.
"""

from __future__ import annotations

import argparse
import sys

from .config import load_config, parse_overrides

COMMANDS = ("data", "warmstart", "train", "bench", "test")


def parse(argv: list[str]):
    parser = argparse.ArgumentParser(prog="python -m rewards_as_labels", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--config", help="YAML profile file (default: the profile's, see --profile)")
    parser.add_argument(
        "--profile", default=None, help="profile name: ./configs/<name>.yaml, else the package's own (default tiny)"
    )
    parser.add_argument("--resume", action="store_true", help="train: continue from the latest checkpoint")
    parser.add_argument("--force", action="store_true", help="warmstart: retrain even if cached")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
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
        elif args.command == "bench":
            from .tools.bench import bench

            bench(cfg)
    except (ValueError, FileExistsError, FileNotFoundError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
