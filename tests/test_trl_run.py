"""The packaged TRL path: ``python -m rewards_as_labels trl`` / ``make train-trl``
(``rewards_as_labels.integrations.trl_run``) and how its runs sit beside ours (``run_names``).

    * the mapping rule, field by field for every method, on 1, 2 and 8 processes, and its refusals;
    * TRL accepts every mapped config (a RewardsAsLabelsGRPOConfig is built from it);
    * TRL's log keys in our names; our batch metrics from the verifier's sums;
    * run folders keyed by engine: ``trl-real-s0`` is engine trl, method real, never method "trl-real";
      the tables key it as the arm ``trl-real``, compared with its own engine's GRPO run;
    * end to end (slow): ``make train-trl PROFILE=smoke METHOD=real SEED=0 PROCS=2`` writes the run
      folder, and ``make evaluate`` / ``make figures`` list it beside our trainer's run.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pandas as pd
import pytest

from rewards_as_labels.config import METHODS, Config, load_config
from rewards_as_labels.run_names import arm, arm_order, engine_run_name, parse_run, reference_arm, split_arm

trl_run = pytest.importorskip("rewards_as_labels.integrations.trl_run", exc_type=ImportError)
from rewards_as_labels.integrations.trl_run import (  # noqa: E402
    METRIC_NAMES,
    Unmappable,
    batch_metrics,
    map_logs,
    parse_trl_overrides,
    trl_fields,
    trl_run_dir,
)


# ----------------------------------------------------------------------------- the mapping rule
def test_batch_fields_hold_the_paper_step():
    """P x n rollouts per generation batch, M optimiser steps of P/M whole groups each, on W processes."""
    for P, n, M, W, micro in [(32, 8, 2, 1, 0), (32, 8, 2, 2, 0), (128, 8, 4, 8, 0), (32, 8, 4, 2, 8), (4, 4, 2, 2, 0)]:
        cfg = Config(prompts_per_step=P, rollouts_per_prompt=n, minibatches_per_step=M, micro_batch_size=micro)
        f = trl_fields(cfg, W)
        per_device, accumulation, spg = (
            f["per_device_train_batch_size"],
            f["gradient_accumulation_steps"],
            f["steps_per_generation"],
        )
        assert f["num_generations"] == n and f["num_iterations"] == 1
        assert per_device * W * accumulation == P * n // M  # rollouts per optimiser step
        assert per_device * W * spg == P * n  # rollouts per generation batch: one paper step
        assert spg == M * accumulation and per_device % n == 0  # whole groups per micro-batch
        assert per_device == (micro or P * n // (M * W))


def test_the_paper_recipe_on_8_gpus():
    # 128 prompts x 8 rollouts, 4 mini-batches, 8 rollouts (one group) per GPU per micro-batch
    cfg = Config(prompts_per_step=128, rollouts_per_prompt=8, minibatches_per_step=4, micro_batch_size=8)
    f = trl_fields(cfg, 8)
    assert (f["per_device_train_batch_size"], f["gradient_accumulation_steps"], f["steps_per_generation"]) == (8, 4, 16)


@pytest.mark.parametrize("method", METHODS)
def test_scalar_fields(method):
    cfg = Config(
        method=method, total_steps=7, minibatches_per_step=2, learning_rate=1e-5, adam_beta1=0.8, adam_beta2=0.95,
        weight_decay=0.1, temperature=0.9, top_k=5, top_p=0.9, max_new_tokens=33, seed=3, max_grad_norm=0.5,
        gradient_checkpointing=True,
    )  # fmt: skip
    f = trl_fields(cfg, 1)
    assert f["max_steps"] == 14  # TRL counts optimiser steps
    assert (f["learning_rate"], f["adam_beta1"], f["adam_beta2"], f["weight_decay"]) == (1e-5, 0.8, 0.95, 0.1)
    assert (f["temperature"], f["top_k"], f["top_p"], f["max_completion_length"]) == (0.9, 5, 0.9, 33)
    assert f["seed"] == 3 and f["shuffle_dataset"] is False  # our prompt order, handed to TRL as is
    assert f["max_grad_norm"] == 0.5 and f["gradient_checkpointing"] is True
    assert f["lr_scheduler_type"] == "constant" and f["warmup_steps"] == 0  # not TRL's linear decay
    assert f["beta"] == cfg.resolved_kl_coef == (0.001 if method == "grpo" else 0.0)
    assert f["use_cpu"] is True and f["bf16"] is False and f["use_vllm"] is False


def test_method_fields():
    cfg = Config(tau=0.25, clip_eps=0.1, dapo_clip_low=0.2, dapo_clip_high=0.3, gspo_clip_low=1e-4, gspo_clip_high=2e-4)
    f = {m: trl_fields(_with(cfg, method=m)) for m in METHODS}
    assert f["real"]["ral_loss"] == "real" and f["real"]["tau"] == 0.25 and "loss_type" not in f["real"]
    assert f["grad"]["ral_loss"] == "grad" and f["grad"]["tau"] == 0.25
    keys = ("ral_loss", "loss_type", "importance_sampling_level", "epsilon", "epsilon_high")
    assert [f["grpo"][k] for k in keys] == [None, "grpo", "token", 0.1, 0.1]
    assert (f["dapo"]["loss_type"], f["dapo"]["epsilon"], f["dapo"]["epsilon_high"]) == ("dapo", 0.2, 0.3)
    assert (f["gspo"]["loss_type"], f["gspo"]["importance_sampling_level"]) == ("grpo", "sequence")
    assert (f["gspo"]["epsilon"], f["gspo"]["epsilon_high"]) == (1e-4, 2e-4)
    assert all(x["scale_rewards"] == "group" for x in f.values())


def _with(cfg: Config, **changes) -> Config:
    values = {k: v for k, v in cfg.to_dict().items() if k != "resolved_kl_coef"}
    return Config(**{**values, **changes})


def test_warmup_clip_off_kl_and_devices():
    base = Config()
    assert trl_fields(_with(base, lr_warmup_steps=10))["lr_scheduler_type"] == "constant_with_warmup"
    assert trl_fields(_with(base, lr_warmup_steps=10))["warmup_steps"] == 10
    assert trl_fields(_with(base, grad_clip="off"))["max_grad_norm"] == 0.0  # TRL: no clip, the norm still logged
    assert trl_fields(_with(base, method="real", kl_coef=0.01))["beta"] == 0.01
    cuda = trl_fields(_with(base, device="cuda", dtype="auto"))
    assert cuda["use_cpu"] is False and cuda["bf16"] is True
    assert trl_fields(_with(base, device="cuda", dtype="float32"))["bf16"] is False


@pytest.mark.parametrize("method", METHODS)
def test_vllm_fields(method):
    cfg = Config(method=method, rollout_backend="vllm", gpu_memory_utilization=0.3)
    f = trl_fields(cfg, 1)
    assert f["use_vllm"] and f["vllm_mode"] == "colocate" and f["vllm_gpu_memory_utilization"] == 0.3
    assert f["vllm_importance_sampling_correction"] is False  # neither REAL/GRAD nor our trainer correct for it
    server = trl_fields(cfg, 1, vllm_mode="server", vllm_server_base_url="http://10.0.0.1:8000")
    assert server["vllm_mode"] == "server" and server["vllm_server_base_url"] == "http://10.0.0.1:8000"


@pytest.mark.parametrize(
    "changes, processes, match",
    [
        ({"grad_clip": "relative"}, 1, "grad_clip='relative'.*no TRL equivalent.*grad_clip=fixed"),
        ({"prompts_per_step": 6, "minibatches_per_step": 2}, 2, "prompts_per_step=6 / minibatches_per_step=2 = 3"),
        ({"micro_batch_size": 24}, 1, "micro_batch_size=24 must divide the 128"),
        ({"micro_batch_size": 4, "method": "real"}, 1, "micro_batch_size=4 splits a group of rollouts_per_prompt=8"),
        ({"micro_batch_size": 4, "method": "grad"}, 1, "splits a group"),
    ],
)
def test_refusals_name_field_value_and_fix(changes, processes, match):
    with pytest.raises(Unmappable, match=match):
        trl_fields(_with(Config(), **changes), processes)


def test_ratio_methods_may_split_a_group_in_micro_batches():
    assert trl_fields(_with(Config(), method="grpo", micro_batch_size=4))["gradient_accumulation_steps"] == 32


@pytest.mark.parametrize("method", METHODS)
def test_trl_accepts_every_mapped_config(tmp_path, method):
    from rewards_as_labels.integrations.trl import RewardsAsLabelsGRPOConfig
    from rewards_as_labels.integrations.trl_run import _housekeeping

    cfg = load_config(profile="smoke", overrides={"method": method})
    args = RewardsAsLabelsGRPOConfig(**_housekeeping(cfg, tmp_path, False), **trl_fields(cfg, 1))
    assert args.steps_per_generation == 2 and args.generation_batch_size == 16 and args.max_steps == 4
    assert args.logging_steps == 2 and args.save_strategy == "no" and args.eval_strategy == "no"


def test_trl_overrides_are_parsed_and_the_rule_owns_its_fields(tmp_path, monkeypatch):
    assert parse_trl_overrides(["logging_first_step=true"]) == {"logging_first_step": True}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_trl_overrides(["nope"])
    from rewards_as_labels.integrations.trl_run import train_trl

    with pytest.raises(Unmappable, match="--trl learning_rate: set by the mapping rule"):
        train_trl(load_config(profile="smoke", overrides={"out": str(tmp_path)}), trl_overrides={"learning_rate": 1.0})


def test_dry_run_prints_the_mapping(capsys):
    from rewards_as_labels.__main__ import main

    assert main(["trl", "--profile", "smoke", "--method", "gspo", "--seed", "1", "--dry-run"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["importance_sampling_level"] == "sequence" and fields["seed"] == 1
    assert main(["trl", "--profile", "smoke", "grad_clip=relative", "--dry-run"]) == 2
    assert "grad_clip='relative'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- metrics
def test_logs_in_our_names():
    row = map_logs({"loss": 1.0, "grad_norm": 2.0, "learning_rate": 3e-4, "entropy": 0.5, "kl": 0.1,
                    "completions/mean_length": 4.0, "clip_ratio/region_mean": 0.2, "ral/weight/neg_max": 1.5,
                    "reward": 0.3, "step_time": None}, "grad")  # fmt: skip
    assert row == {
        "train/loss": 1.0, "train/grad_norm": 2.0, "train/lr": 3e-4, "policy/entropy": 0.5, "train/kl": 0.1,
        "response/length_mean": 4.0, "train/clip_fraction": 0.2, "weights/grad/neg_max": 1.5, "trl/reward": 0.3,
    }  # fmt: skip
    assert set(METRIC_NAMES.values()) <= set(row)


def test_batch_metrics_from_verifier_sums():
    sums = {"rows": 16, "correct": 6, "truncated": 2, "groups": 4, "all_correct": 1, "all_wrong": 2,
            "count/correct": 6, "count/wrong": 8, "count/truncated": 2}  # fmt: skip
    row = batch_metrics(sums, ["correct", "wrong", "truncated"], 1)
    assert row["reward/mean"] == 6 / 16 and row["response/truncated_frac"] == 2 / 16
    assert row["groups/one_label_frac"] == 0.75 and row["groups/all_wrong_frac"] == 0.5 and row["groups/count"] == 4
    assert row["verify/wrong_frac"] == 0.5


def test_verifier_reward_scores_with_our_verifier_and_counts_groups():
    from types import SimpleNamespace

    from rewards_as_labels.integrations.trl_run import VerifierReward

    problems = [
        SimpleNamespace(answer="12", prompt="5+7=", question="5+7"),
        SimpleNamespace(answer="9", prompt="", question=""),
    ]
    reward = VerifierReward(problems, eos_ids={1}, n=2)
    out = reward(prompts=None, completions=["12", "13", "9", "9"], completion_ids=[[5, 1], [5, 1], [5, 1], [5]],
                 problem_index=[0, 0, 1, 1])  # fmt: skip
    assert out == [1.0, 0.0, 1.0, 0.0]  # the last is truncated (no EOS): fail closed
    assert reward.sums["groups"] == 2 and reward.sums["all_correct"] == 0 and reward.sums["truncated"] == 1


# ----------------------------------------------------------------------------- run folders and keys
def test_run_names_keep_engine_and_method_apart():
    assert parse_run("trl-real-s0") == ("trl", "real", 0) and parse_run("trl-real-s0").arm == "trl-real"
    assert parse_run("real-s0") == ("ours", "real", 0)
    for bad in ("trl-s0", "trl-nope-s0", "ours-real-s0", "foo-real-s1"):
        with pytest.raises(ValueError):
            parse_run(bad)
    for engine in ("ours", "trl"):
        for method in METHODS:
            assert parse_run(engine_run_name(engine, method, 4)) == (engine, method, 4)
            assert split_arm(arm(engine, method)) == (engine, method)
    assert reference_arm("trl-dapo") == "trl-grpo" and reference_arm("dapo") == "grpo"
    assert arm_order(["trl-grpo", "trl-real", "grad", "base"]) == ["base", "grad", "trl-real", "trl-grpo"]
    assert trl_run_dir(Config(profile="smoke", method="grad", seed=2)).as_posix() == "runs/smoke/trl-grad-s2"


def test_run_folders_and_metrics_with_trl_runs(tmp_path):
    from rewards_as_labels.results import load_metrics, run_folders

    for name in ("trl-real-s0", "grpo-s0", "real-s0", "trl-grpo-s0", "notes"):
        (tmp_path / name).mkdir()
        method = name.split("-s")[0].removeprefix("trl-")
        (tmp_path / name / "metrics.jsonl").write_text(json.dumps({"step": 0, "method": method, "seed": 0}) + "\n")
    assert [p.name for p in run_folders(tmp_path)] == ["real-s0", "grpo-s0", "trl-real-s0", "trl-grpo-s0", "notes"]
    m = load_metrics(tmp_path).set_index("run")
    assert m.loc["trl-real-s0", "method"] == "trl-real" and m.loc["trl-real-s0", "engine"] == "trl"
    assert m.loc["trl-real-s0", "algorithm"] == "real" and m.loc["real-s0", "method"] == "real"


def test_each_engine_is_compared_with_its_own_grpo():
    from rewards_as_labels.results import comparison_table, paired_difference_table

    rows = []
    for method, offset in (("grpo", 0.0), ("real", 1.0), ("trl-grpo", 0.0), ("trl-real", 0.0)):
        for seed in ("0", "1"):
            for p, base in (("p1", 0.0), ("p2", 1.0)):
                rows.append({"method": method, "seed": seed, "problem_id": p, "pass@1": min(1.0, base + offset)})
    pp = pd.DataFrame(rows)
    table = paired_difference_table(pp, n_boot=200)
    assert list(table.index) == ["real", "trl-real"]
    assert table.loc["real", "diff"] == 0.5 and table.loc["trl-real", "diff"] == 0.0
    assert table.loc["trl-real", "verdict"] == "cannot be told apart at this budget"
    # TRL's GRPO missing: its arms are left out, ours still compared
    only = paired_difference_table(pp[pp.method != "trl-grpo"], n_boot=200)
    assert list(only.index) == ["real"]
    ev = pp.groupby(["method", "seed"], as_index=False)["pass@1"].mean().assign(**{"pass@2": 0.5, "greedy": 0.5})
    comp = comparison_table(ev, table)
    assert comp.loc["trl-grpo", "vs grpo"] == comp.loc["grpo", "vs grpo"] == "(reference)"


def test_engine_comparison_pairs_trl_with_our_runs_by_seed_and_problem():
    from rewards_as_labels.results import engine_comparison, engine_table

    rows = []
    for method, shift in (("real", 0.0), ("trl-real", 0.0), ("grpo", 0.0), ("trl-grpo", 0.5), ("gspo", 0.0)):
        for seed in ("0", "1", "2"):
            for i in range(20):
                value = min(1.0, (i % 4) / 4 + shift)
                rows.append({"method": method, "seed": seed, "problem_id": f"p{i}", "pass@1": value})
    pp = pd.DataFrame(rows)
    table = engine_comparison(pp, n_boot=500)
    assert list(table.index) == ["real", "grpo"]  # gspo: no TRL run; trl-* never a row of its own
    assert table.loc["real", "diff"] == 0.0 and table.loc["real", "verdict"] == "cannot be told apart at this budget"
    assert table.loc["grpo", "diff"] > 0.2 and table.loc["grpo", "verdict"] == "trl better than ours"
    assert table.loc["grpo", "trl"] > table.loc["grpo", "ours"] and set(table.seeds) == {3}
    # the seeds both engines have: a TRL arm with seed 0 only pairs on seed 0
    one = engine_comparison(pp[(pp.method != "trl-real") | (pp.seed == "0")], n_boot=200)
    assert one.loc["real", "seeds"] == 1
    printed = engine_table(table)
    assert printed.loc["real", "trl − ours (points, 95% CI: seeds, then problems)"] == "+0.0 [+0.0, +0.0]"
    assert engine_comparison(pp[~pp.method.str.startswith("trl")]).empty


# ----------------------------------------------------------------------------- end to end: make train-trl
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_train_trl_writes_a_run_that_evaluate_and_figures_list(tmp_path):
    from conftest import ROOT, make_env, standin_venv

    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, repo / name)
    for name in ("notebooks", "configs", "src", "requirements", "scripts"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    venv = standin_venv(tmp_path / "venv")
    env = {**make_env(), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    common = ["PROFILE=smoke", f"VENV={venv}", "ACCEL=cpu", "JOBS=1"]

    def make(*args):
        run = subprocess.run(["make", "--no-print-directory", *args, *common], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=900)  # fmt: skip
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        return run.stdout

    out = make("train-trl", "METHOD=real", "SEED=0", "PROCS=2", f"PORT={_free_port()}")
    assert ">>> [smoke] train-trl real-s0 on 2 processes (configs/accelerate/cpu_2proc.yaml)" in out
    run = repo / "runs/smoke/trl-real-s0"
    final = json.loads((run / "final.json").read_text())
    assert final["engine"] == "trl" and final["method"] == "real" and final["step"] == 2 and "eval/pass@1" in final
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    for name in ("reward/mean", "policy/entropy", "train/grad_norm", "train/loss", "train/lr", "groups/one_label_frac",
                 "response/length_mean", "eval/pass@1", "eval/per_problem_correct"):  # fmt: skip
        assert all(name in r for r in rows), name
    assert all(r["groups/count"] == 4 for r in rows)  # the smoke step's 4 prompts, summed over both processes
    config = json.loads((run / "config.json").read_text())
    assert config["engine"] == "trl" and config["method"] == "real" and config["profile"] == "smoke"
    trl = json.loads((run / "trl.json").read_text())
    assert trl["num_processes"] == 2 and trl["mapped"]["per_device_train_batch_size"] == 4
    assert (run / "versions.json").is_file() and (run / "ckpt_000002/model/config.json").is_file()

    # our trainer's GRPO beside it: make evaluate lists both, make figures compares each with its own GRPO
    out = make("figures", "METHODS=grpo", "SEEDS=0")
    evaluation = pd.read_csv(repo / "runs/smoke/tables/evaluation.csv", dtype={"seed": str})
    assert list(evaluation.method) == ["base", "grpo", "trl-real"]
    assert list(evaluation.engine) == ["ours", "ours", "trl"]
    comparison = pd.read_csv(repo / "runs/smoke/tables/comparison.csv", index_col=0)
    assert "trl-real" in comparison.index
