r"""The registry: real training sets and benchmarks on the Hugging Face hub, as specs only.

Each :class:`DatasetSpec` says where a data set lives on the hub and which of its fields
become a :class:`~rewards_as_labels.problems.Problem`; ``conversion.py`` applies a spec to
rows, ``data.py`` downloads, caches and loads (``make data DATA=<name> EVAL=<names>``).
Your own files get a spec of the same kind, built from their columns (``local_files.py``).
The paper trains on DeepScaleR and reports AIME 2024/2025, MATH-500, AMC 2023, Minerva
Math and OlympiadBench.

Choices:
1) Prompt = question + ``INSTRUCTION`` ("Let's think step by step and output the final
   answer within \\boxed{}.", the DeepScaleR/verl prompt), unless a spec names a
   ``prompt`` field to use as given (verl files carry their instruction already).
2) A list-valued answer field means what its data set says it means (``gold_list``):
   ``alternatives`` (verl's ``reward_model.ground_truth``: any element is correct) or
   ``parts`` of one answer, joined with ", " (OlympiadBench's ``final_answer``: a problem
   with ``is_multiple_answer`` lists e.g. both roots, and all of them make the answer).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
# bump when the conversion changes, so old caches read as stale
# (2: gold lists read per source, dropped problems listed in the manifest)
REGISTRY_VERSION = 2  # bump when the conversion or verifier.unusable_gold changes: old caches then read as stale
EMBEDDED = "arithmetic"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set lives and how its rows become Problems.

    hub_id: the hub repository (empty for your own files).
    splits: source split of each of our splits (``{"train": "train", "test": "test"}``).
    question / answer: field paths, dots for nesting (``prompt.0.content``).
    answer_format: ``plain``, ``gsm8k`` or ``boxed`` (``conversion.gold_texts``).
    gold_list: what a list in the answer field means: ``alternatives`` or ``parts`` (choice 2).
    prompt: field path of a prompt to use as given (chat messages or text); None = question
        + ``INSTRUCTION`` (choice 1).
    configs: hub configurations concatenated in order (MATH has one per subject).
    """

    name: str
    hub_id: str
    splits: Mapping[str, str]
    question: str
    answer: str
    answer_format: str = "plain"
    configs: tuple[str | None, ...] = (None,)
    level: str | None = None
    strip: tuple[str, ...] = ()  # regexes removed from the question (e.g. DAPO's instruction)
    kind: str = "train"  # "train" or "benchmark"
    gold_list: str = "alternatives"
    prompt: str | None = None
    note: str = ""

    def fingerprint(self) -> str:
        blob = json.dumps({**asdict(self), "instruction": INSTRUCTION, "version": REGISTRY_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_DAPO_STRIP = (
    r"^Solve the following math problem step by step\..*?answer to the problem\.\s*",
    r"\s*Remember to put your answer on its own line after \"Answer:\"\.\s*$",
)
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)

TRAINING_SETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec(
            "deepscaler",
            "agentica-org/DeepScaleR-Preview-Dataset",
            {"train": "train"},
            "problem",
            "answer",
            note="the paper's training set (~40k AIME/AMC/Omni-MATH/STILL problems)",
        ),
        DatasetSpec(
            "gsm8k",
            "openai/gsm8k",
            {"train": "train", "test": "test"},
            "question",
            "answer",
            answer_format="gsm8k",
            configs=("main",),
        ),
        DatasetSpec(
            "math",
            "EleutherAI/hendrycks_math",
            {"train": "train", "test": "test"},
            "problem",
            "solution",
            answer_format="boxed",
            configs=MATH_SUBJECTS,
            level="level",
            note="Hendrycks MATH (hendrycks/competition_math is no longer downloadable)",
        ),
        DatasetSpec(
            "numina_tir",
            "AI-MO/NuminaMath-TIR",
            {"train": "train", "test": "test"},
            "problem",
            "solution",
            answer_format="boxed",
            note="the ms-swift port's data (4,000 problems there)",
        ),
        DatasetSpec(
            "dapo17k",
            "BytedTsinghua-SIA/DAPO-Math-17k",
            {"train": "train"},
            "prompt.0.content",
            "reward_model.ground_truth",
            strip=_DAPO_STRIP,
            note="the paper's alternative training set",
        ),
    )
}
BENCHMARKS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec(
            "math500", "HuggingFaceH4/MATH-500", {"test": "test"}, "problem", "answer", level="level", kind="benchmark"
        ),
        DatasetSpec("aime24", "HuggingFaceH4/aime_2024", {"test": "train"}, "problem", "answer", kind="benchmark"),
        DatasetSpec("aime25", "yentinglin/aime_2025", {"test": "train"}, "problem", "answer", kind="benchmark"),
        DatasetSpec("amc23", "math-ai/amc23", {"test": "test"}, "question", "answer", kind="benchmark"),
        DatasetSpec("minerva", "math-ai/minervamath", {"test": "test"}, "question", "answer", kind="benchmark"),
        DatasetSpec(
            "olympiadbench",
            "Hothan/OlympiadBench",
            {"test": "train"},
            "question",
            "final_answer",
            configs=("OE_TO_maths_en_COMP",),
            kind="benchmark",
            gold_list="parts",
            note="open-ended, text-only, English maths competition subset (675 problems)",
        ),
    )
}
NAMES_HINT = (
    f"training sets: {EMBEDDED}, {', '.join(TRAINING_SETS)}; benchmarks: {', '.join(BENCHMARKS)}; "
    "or a path to your own .parquet, .jsonl, .json or .csv file, or a folder of them"
)
# the paper's column names, for tables
BENCHMARK_TITLES = {
    "aime24": "AIME24",
    "aime25": "AIME25",
    "math500": "MATH500",
    "amc23": "AMC23",
    "minerva": "Minerva",
    "olympiadbench": "O-Bench",
}


def spec_of(name: str) -> DatasetSpec:
    """The registry entry called ``name`` (training set or benchmark)."""
    if name in TRAINING_SETS:
        return TRAINING_SETS[name]
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    raise ValueError(f"unknown data set {name!r}; {NAMES_HINT}")
