"""Build one launch config of ``configs/accelerate/`` end to end in this (one, CPU) process; print JSON.

    python tests/accelerate_build_script.py CONFIG_NAME

Run by ``tests/test_accelerate_configs.py`` (a fresh process per config: accelerate's state and the
process group are process-wide). What ``accelerate launch --config_file <it>`` does, as far as one
CPU process allows:

1. the launcher: accelerate's own argument parser and config loader (``_validate_launch_command``) and
   the environment its launcher gives every process (``prepare_multi_gpu_env`` for DDP and FSDP,
   ``prepare_deepspeed_cmd_env`` for DeepSpeed), recorded as ``launch`` / ``env``;
2. that environment in this process, as rank 0 of a world of 1 (torchrun's variables), and the
   ``Accelerator`` a training script builds there with ``cpu=True`` (what ``use_cpu=True`` gives it);
3. ``accelerator.prepare(model, optimizer)`` of a tiny Qwen2 and one optimiser step under
   ``accelerator.autocast()``, recording what was built (wrapper class, parameter class, how many
   decoder layers are FSDP units, the dtype a Linear computes in, whether the loss fell).

accelerate enables FSDP and DeepSpeed only on accelerators: on CPU the same environment silently
gives plain DDP (MULTI_CPU, gloo). That fallback is recorded (``fallback``), and then
* FSDP: the state is set to FSDP with the plugin accelerate built from the launcher's environment
  (the step accelerate takes on a GPU), so ``prepare`` runs its real FSDP2 path (``fully_shard``,
  which runs on CPU over gloo);
* DeepSpeed: the plugin (ZeRO stage, offload, ZeRO-3 init, bf16) is built from the environment;
  the ``Accelerator`` and the DeepSpeed engine need the ``deepspeed`` package and a CUDA GPU, and
  are built only where both exist (else ``deepspeed_skipped`` says which is missing).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def launcher_env(name: str) -> tuple[dict, dict]:
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = REPO / "configs" / "accelerate" / f"{name}.yaml"
    args = launch_command_parser().parse_args(["--config_file", str(path), "train.py"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    launch = {k: getattr(args, k) for k in ("use_deepspeed", "use_fsdp", "multi_gpu", "cpu", "mixed_precision")}
    launch["num_processes"] = args.num_processes
    if args.use_deepspeed:  # as accelerate's launch_command does before its deepspeed_launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:  # multi_gpu_launcher (DDP and FSDP)
        env = prepare_multi_gpu_env(args)
    keep = ("ACCELERATE_", "FSDP_")
    return launch, {k: v for k, v in env.items() if k.startswith(keep)}


def tiny_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return Qwen2ForCausalLM(config)


def _unwrap(model):
    """The Qwen2ForCausalLM inside DDP / a DeepSpeed engine (FSDP2 shards it in place)."""
    return model.module if hasattr(model, "module") else model


def train_step(accelerator, model, optimizer) -> dict:
    """Two forward passes on one batch with an optimiser step between; the dtype an MLP Linear computes in."""
    import torch

    seen = {}
    down = _unwrap(model).model.layers[0].mlp.down_proj

    def record(module, inputs, output):  # returns None: the output is unchanged
        seen.setdefault("dtype", str(output.dtype))

    handle = down.register_forward_hook(record)
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(2):
        with accelerator.autocast():
            loss = model(input_ids=ids, labels=ids).loss
        losses.append(loss.item())
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    handle.remove()
    return {"linear_dtype": seen["dtype"], "losses": losses}


def main(name: str) -> dict:
    launch, env = launcher_env(name)
    os.environ.update(env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    import torch
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

    out: dict = {"launch": launch, "env": env}
    if launch["use_deepspeed"]:
        plugin = DeepSpeedPlugin()  # from the launcher's ACCELERATE_DEEPSPEED_* variables
        plugin.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])
        ds = plugin.deepspeed_config
        out["deepspeed"] = {
            "zero_stage": ds["zero_optimization"]["stage"],
            "offload_optimizer": ds["zero_optimization"]["offload_optimizer"]["device"],
            "offload_param": ds["zero_optimization"]["offload_param"]["device"],
            "gather_16bit_on_save": ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"],
            "zero3_init": plugin.zero3_init_flag,
            "bf16": ds.get("bf16", {}).get("enabled", False),
        }
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            try:  # what a training script's Accelerator(cpu=True) does in the launched process
                Accelerator(cpu=True)
            except ImportError as exc:
                out["accelerator_error"] = str(exc)
            out["deepspeed_skipped"] = "the deepspeed package is not installed (make setup ACCEL=cuda EXTRAS=deepspeed)"
            return out
        if not torch.cuda.is_available():
            accelerator = Accelerator(cpu=True)  # deepspeed present: accelerate ignores the plugin on CPU
            out["fallback"] = {"distributed_type": str(accelerator.distributed_type)}
            out["deepspeed_skipped"] = "no CUDA GPU: accelerate runs DeepSpeed only on an accelerator"
            return out
        # a GPU with deepspeed (never run by this project so far): the engine, as the launched process builds it
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 2  # "auto" needs a prepared DataLoader
        accelerator = Accelerator(deepspeed_plugin=plugin)
        model, optimizer = accelerator.prepare(tiny_model(), torch.optim.AdamW(tiny_model().parameters(), lr=1e-2))
        return out | built(accelerator, model, optimizer)
    fsdp = launch["use_fsdp"]
    plugin = FullyShardedDataParallelPlugin() if fsdp else None  # from the launcher's FSDP_* variables
    accelerator = Accelerator(cpu=True, fsdp_plugin=plugin)
    out["fallback"] = {
        "distributed_type": str(accelerator.distributed_type),
        "backend": accelerator.state.backend,
        "plugin_kept": getattr(accelerator.state, "fsdp_plugin", None) is not None,
    }
    if fsdp:  # what AcceleratorState does on an accelerator: FSDP with this plugin
        plugin.set_mixed_precision(accelerator.mixed_precision)
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as AcceleratorState.__init__ ends
        out["fsdp"] = {
            "version": plugin.fsdp_version,
            "auto_wrap_policy": getattr(plugin.auto_wrap_policy, "func", plugin.auto_wrap_policy).__name__,
            "reshard_after_forward": plugin.reshard_after_forward,
            "state_dict_type": str(plugin.state_dict_type),
            "cpu_ram_efficient_loading": plugin.cpu_ram_efficient_loading,
        }
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = accelerator.prepare(model, optimizer)
    return out | built(accelerator, model, optimizer)


def built(accelerator, model, optimizer) -> dict:
    from torch.distributed.fsdp import FSDPModule

    return dict(
        distributed_type=str(accelerator.distributed_type),
        mixed_precision=accelerator.mixed_precision,
        model_class=type(model).__name__,
        param_class=type(next(model.parameters())).__name__,
        fsdp_units=sum(isinstance(m, FSDPModule) for m in model.modules()),
        decoder_layers_fsdp=[isinstance(m, FSDPModule) for m in _unwrap(model).model.layers],
        optimizer_class=type(optimizer).__name__,
        **train_step(accelerator, model, optimizer),
    )


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1])))
