"""Which trainer (engine), method and seed a run folder holds, from its name.

Two engines train runs that the evaluation and figure notebooks read side by side:

    ======  =========================  ==========================================================
    engine  run folder                 trained by
    ======  =========================  ==========================================================
    ours    ``<method>-s<seed>``       the package's trainer (``make train``, :mod:`.trainer`)
    trl     ``trl-<method>-s<seed>``   TRL's GRPOTrainer under accelerate (``make train-trl``,
                                       :mod:`.integrations.trl_run`)
    ======  =========================  ==========================================================

How runs are keyed in the tables (``evaluation.csv``, ``per_problem.csv``, ``comparison.csv``,
metrics frames): ``method`` holds the run's *arm*, :func:`arm` -- the method for our trainer
(``real``), ``<engine>-<method>`` for another engine (``trl-real``) -- so that every groupby over
``method`` (means over seeds, paired intervals, plots) keeps the engines apart; the columns
``engine`` (``ours`` / ``trl``) and ``algorithm`` (the method alone) say what the arm is made of.
A method is compared with the GRPO run *of its own engine* (:func:`reference_arm`).

:func:`parse_run` never reads ``trl-real-s0`` as a method ``trl-real``: the engine prefix is
recognised first, and the method must be one of :data:`~rewards_as_labels.config.METHODS`.
"""

from __future__ import annotations

from typing import NamedTuple

from .config import METHODS, parse_run_name, run_name

ENGINES = ("ours", "trl")  # the first is the package's own trainer: its folders carry no prefix


class RunId(NamedTuple):
    """What a run folder's name says: its engine, method and seed."""

    engine: str
    method: str
    seed: int

    @property
    def arm(self) -> str:
        """The run's key in the tables: see :func:`arm`."""
        return arm(self.engine, self.method)


def arm(engine: str, method: str) -> str:
    """The table key of ``method`` trained by ``engine``: the method itself for our trainer, else
    ``<engine>-<method>``.

    >>> arm("ours", "real"), arm("trl", "real")
    ('real', 'trl-real')
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    return method if engine == ENGINES[0] else f"{engine}-{method}"


def split_arm(label: str) -> tuple[str, str]:
    """``(engine, method)`` of a table key made by :func:`arm` (``base`` and unknown keys: engine ``ours``).

    >>> split_arm("trl-grpo"), split_arm("grpo"), split_arm("base")
    (('trl', 'grpo'), ('ours', 'grpo'), ('ours', 'base'))
    """
    engine, sep, method = label.partition("-")
    if sep and engine in ENGINES[1:] and method in METHODS:
        return engine, method
    return ENGINES[0], label


def engine_run_name(engine: str, method: str, seed: int) -> str:
    """The folder name of a run: :func:`~rewards_as_labels.config.run_name` behind the engine's prefix.

    >>> engine_run_name("ours", "grpo", 1), engine_run_name("trl", "real", 0)
    ('grpo-s1', 'trl-real-s0')
    """
    return run_name(arm(engine, method), seed)


def parse_run(name: str) -> RunId:
    """The engine, method and seed of a run folder name; inverse of :func:`engine_run_name`.
    Raises ``ValueError`` for a name that is not a run of a known engine and method.

    >>> parse_run("trl-real-s0"), parse_run("gspo-s12")
    (RunId(engine='trl', method='real', seed=0), RunId(engine='ours', method='gspo', seed=12))
    """
    label, seed = parse_run_name(name)
    engine, method = split_arm(label)
    if method not in METHODS:
        raise ValueError(
            f"{name!r} is not a run folder: expected <method>-s<seed> or <engine>-<method>-s<seed> with a method "
            f"of {', '.join(METHODS)} and an engine of {', '.join(ENGINES[1:])}"
        )
    return RunId(engine, method, seed)


def reference_arm(label: str, reference: str = "grpo") -> str:
    """The arm a method's paired comparison is taken against: ``reference`` trained by the same engine.

    >>> reference_arm("real"), reference_arm("trl-real"), reference_arm("real", "trl-grpo")
    ('grpo', 'trl-grpo', 'trl-grpo')
    """
    if split_arm(reference)[0] != ENGINES[0]:  # already one engine's arm (``trl-grpo``): as given
        return reference
    engine, _ = split_arm(label)
    return arm(engine, reference)


def arm_order(labels) -> list[str]:
    """``labels`` (table keys) in the paper's order: ``base``, our methods, then each other engine's.

    >>> arm_order(["trl-real", "grpo", "base", "real", "notes"])
    ['base', 'real', 'grpo', 'trl-real', 'notes']
    """
    present = list(dict.fromkeys(labels))
    known = ["base"] + [arm(e, m) for e in ENGINES for m in METHODS]
    return [k for k in known if k in present] + [k for k in present if k not in known]
