"""Every launch config of ``configs/accelerate/`` built end to end, as far as one CPU process allows.

``tests/accelerate_build_script.py`` (its docstring has the details) runs accelerate's own launcher
code on the config (argument parser, config loader, the environment its launcher gives each
process), builds the ``Accelerator`` a training script builds under that environment, and
``accelerator.prepare(model, optimizer)`` a tiny Qwen2 for one optimiser step. Each test asserts what
was actually built, so a silent fallback cannot pass: on CPU accelerate turns the FSDP environment
into plain DDP (asserted, then the script takes the FSDP step accelerate takes on a GPU), and it runs
DeepSpeed only with the ``deepspeed`` package on an accelerator (the plugin is checked; the rest is
skipped with the reason). GPUs are not exercised here (NCCL, bf16 kernels, real sharding over
several ranks): docs/scaling_out.md, "Which launch configs have run".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["cpu_2proc", "multi_gpu", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]


def build(name: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    for key in [k for k in env if k.startswith(("ACCELERATE_", "FSDP_"))]:
        del env[key]  # only what the launcher sets
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "accelerate_build_script.py"), name],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_every_config_is_built_here():
    assert sorted(p.stem for p in (REPO / "configs" / "accelerate").glob("*.yaml")) == sorted(CONFIGS)


def _trained(out: dict) -> None:
    assert out["optimizer_class"] == "AcceleratedOptimizer"
    first, second = out["losses"]
    assert second < first  # the prepared optimiser stepped the prepared model's parameters


@pytest.mark.slow
@pytest.mark.parametrize("name, processes, precision", [("cpu_2proc", 2, "no"), ("multi_gpu", 8, "bf16")])
def test_ddp_configs_build_ddp(name, processes, precision):
    out = build(name)
    assert out["launch"]["multi_gpu"] and out["launch"]["num_processes"] == processes
    assert out["env"]["ACCELERATE_MIXED_PRECISION"] == precision and "ACCELERATE_USE_FSDP" not in out["env"]
    # torch's DDP over gloo (on GPUs: the same wrapper over NCCL)
    assert out["distributed_type"] == "DistributedType.MULTI_CPU" and out["fallback"]["backend"] == "gloo"
    assert out["model_class"] == "DistributedDataParallel" and out["param_class"] == "Parameter"
    assert out["mixed_precision"] == precision
    assert out["linear_dtype"] == ("torch.bfloat16" if precision == "bf16" else "torch.float32")  # autocast
    _trained(out)


@pytest.mark.slow
def test_fsdp_config_builds_fsdp2_not_the_ddp_fallback():
    out = build("fsdp")
    env = out["env"]
    assert out["launch"]["use_fsdp"] and env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    # accelerate's own choice on CPU: plain DDP, the plugin dropped -- what a test must not mistake for FSDP
    assert out["fallback"] == {"distributed_type": "DistributedType.MULTI_CPU", "backend": "gloo", "plugin_kept": False}
    assert out["fsdp"] == {
        "version": 2,
        "auto_wrap_policy": "transformer_auto_wrap_policy",
        "reshard_after_forward": True,
        "state_dict_type": "StateDictType.FULL_STATE_DICT",
        "cpu_ram_efficient_loading": True,
    }
    # what was built: FSDP2 (fully_shard), every decoder layer its own unit, parameters sharded as DTensors
    assert out["distributed_type"] == "DistributedType.FSDP"
    assert out["model_class"] == "FSDPQwen2ForCausalLM" and out["param_class"] == "DTensor"
    assert out["decoder_layers_fsdp"] == [True, True]
    assert out["mixed_precision"] == "bf16" and out["linear_dtype"] == "torch.bfloat16"  # FSDP's param dtype
    _trained(out)


@pytest.mark.slow
@pytest.mark.parametrize("name, stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_configs_build_their_plugin_and_the_engine_where_deepspeed_runs(name, stage):
    out = build(name)
    assert out["launch"]["use_deepspeed"] and out["env"]["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    assert out["deepspeed"] == {
        "zero_stage": stage,
        "offload_optimizer": "none",
        "offload_param": "none",
        "gather_16bit_on_save": stage == 3,
        "zero3_init": stage == 3,
        "bf16": True,
    }
    if "deepspeed_skipped" in out:
        if "not installed" in out["deepspeed_skipped"]:  # no silent fallback: the Accelerator refuses
            assert "DeepSpeed is not installed" in out["accelerator_error"]
        pytest.skip(f"{name}: Accelerator and DeepSpeed engine not built: {out['deepspeed_skipped']}")
    assert out["distributed_type"] == "DistributedType.DEEPSPEED" and out["model_class"] == "DeepSpeedEngine"
    _trained(out)
