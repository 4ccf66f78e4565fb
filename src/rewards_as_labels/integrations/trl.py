"""REAL and GRAD as losses of TRL's ``GRPOTrainer`` (written against TRL 1.16).

    from rewards_as_labels.integrations.trl import RewardsAsLabelsGRPOConfig, RewardsAsLabelsGRPOTrainer

    args = RewardsAsLabelsGRPOConfig(output_dir="runs/trl-real", ral_loss="real", tau=0.5,
                                     num_generations=8, per_device_train_batch_size=32)
    trainer = RewardsAsLabelsGRPOTrainer(model=model, reward_funcs=binary_reward, args=args,
                                         train_dataset=dataset, processing_class=tokenizer)
    trainer.train()

Generation (transformers or vLLM), reward functions, reference model, logging, checkpoints and
DDP / DeepSpeed / FSDP are TRL's. The loss is ours: :func:`~rewards_as_labels.objectives.sequence_scores`
(eq. 3) then :func:`~rewards_as_labels.objectives.real_loss` (eq. 4) or
:func:`~rewards_as_labels.objectives.grad_loss`, not a re-implementation.

How this departs from TRL's GRPO (each change is tagged ``[RAL-k]`` where it is made):
    1) [RAL-1] Loss. With ``ral_loss="real"`` / ``"grad"`` the policy loss is ``real_loss`` /
       ``grad_loss`` of the per-rollout scores s_i (eq. 3) viewed as ``[G, n]``. TRL's ``loss_type``,
       ``epsilon``, ``epsilon_high``, ``delta`` and ``importance_sampling_level`` are not used
       (no ratio, no clip). ``ral_loss=None`` leaves the whole trainer to TRL (a GRPO/DAPO baseline).
    2) [RAL-2] Rewards are labels, advantages are ignored. The reward of a rollout (weighted sum
       over reward functions, as TRL logs it) becomes the label ``reward > reward_threshold``.
       Rewards other than 0/1 raise unless ``require_binary_rewards=False``; a rollout that no reward
       function scored (all returned ``None``) always raises -- return 0.0 for an unparsable answer
       (fail closed) instead. TRL still computes, normalises (``scale_rewards``,
       ``multi_objective_aggregation``) and logs its advantages, but they never reach this loss:
       ``scale_rewards`` has no effect on REAL/GRAD (ms-swift's ``--scale_rewards none`` is moot here).
    3) [RAL-3] Groups stay whole. REAL couples the rollouts of a group (the constants C+/C- of eq. 5),
       so a group must never be split. TRL's sampler already puts the n rollouts of a prompt next to each
       other and hands each process a contiguous block of ``per_device_train_batch_size *
       steps_per_generation`` rows, but TRL then shuffles *rows* before cutting the generation batch into
       ``steps_per_generation`` slices, which scatters a group over slices. We shuffle *whole groups*
       instead and require ``per_device_train_batch_size % num_generations == 0``; group ids travel with
       the batch and every loss call checks them. Every slice on every process then holds the same number
       of whole groups, so the mean of the local losses over processes (DDP/ZeRO/FSDP gradient averaging)
       and over accumulation slices equals the paper's batch loss (sum over groups / G) exactly: the
       released code's all-gather of scores is not needed (``tests/test_trl_integration.py`` checks the
       2-process gradient against the single-process full-batch gradient).
    4) Old log-probs. pi_old is TRL's ``old_per_token_logps`` (computed at generation time by the
       training model). TRL skips them when ``gradient_accumulation_steps % (steps_per_generation *
       num_iterations) == 0`` (one optimiser step per generation batch): fully on-policy. Then
       ``old = logp.detach()``, so s = 0 in value while its gradient is that of mean_t log pi -- the
       paper's on-policy case (every positive weighs (1/tau)/(1+|O+|)). With ``steps_per_generation >
       gradient_accumulation_steps`` (the paper's 4 optimiser mini-batches per generation batch) TRL
       computes them and the later mini-batches are off-policy (s != 0).
    5) KL. ``beta > 0`` adds ``beta * objectives.kl_penalty`` (the k3 estimator TRL uses, token mean per
       rollout then mean); the paper trains REAL/GRAD with ``beta = 0`` (TRL's default).
    6) Rejected at config time, because the paper defines no REAL/GRAD version of them:
       ``mask_truncated_completions`` (a fully masked rollout has no score; let the verifier score
       truncation 0), ``top_entropy_quantile < 1``, ``off_policy_mask_threshold``, an entropy bonus, and
       vLLM's importance-sampling correction (``vllm_importance_sampling_correction=False`` with vLLM).
    7) GRAD is averaged over the mixed-group rollouts *of each slice on each process*, then averaged
       over slices and processes; the count of mixed rollouts varies between slices, so this weights
       rollouts slightly differently from one global mean. REAL has no such caveat (see 3).

Metrics added to TRL's (same ``train/`` / ``eval/`` logs; every value covers all processes):
    ral/frac_mixed_groups       groups holding both labels (the only ones with a gradient)
    ral/frac_all_correct_groups groups whose rollouts are all positive
    ral/frac_all_wrong_groups   groups whose rollouts are all negative
    ral/score/mean, ral/score/abs_max   s_i of eq. (3); 0 on-policy (exactly, when pi_old is not stored)
    ral/weight/{pos,neg}_{mean,max}     |dL_g/ds_k| per rollout of mixed groups, eq. (5) for REAL,
                                        eq. (6) for GRAD, before the 1/G (1/#rollouts) normalisation
    entropy, kl                 as in TRL (token mean over the batch; kl only when beta > 0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer
from trl.extras.profiling import profiling_decorator
from trl.trainer.utils import split_pixel_values_by_grid, split_tensor_dict, unsplit_pixel_values_by_grid

from .. import gradients, objectives

__all__ = [
    "RAL_LOSSES",
    "RewardsAsLabelsGRPOConfig",
    "RewardsAsLabelsGRPOTrainer",
    "rewards_to_labels",
    "shuffle_groups",
    "check_whole_groups",
]

RAL_LOSSES = ("real", "grad")


# ----------------------------------------------------------------------------- helpers (pure)
def rewards_to_labels(rewards: torch.Tensor, threshold: float = 0.5, require_binary: bool = True) -> torch.Tensor:
    """[RAL-2] ``[B]`` rewards -> ``[B]`` bool labels ``reward > threshold``.

    Raises on NaN (an unscorable rollout) and, when ``require_binary``, on any value other than 0/1.

    >>> rewards_to_labels(torch.tensor([1.0, 0.0, 1.0]))
    tensor([ True, False,  True])
    >>> rewards_to_labels(torch.tensor([1.1, 0.1]), require_binary=False)  # correct + format bonus
    tensor([ True, False])
    """
    nan = torch.isnan(rewards)
    if nan.any():
        raise ValueError(
            f"{int(nan.sum())} rollout(s) got no reward (every reward function returned None). REAL/GRAD need a "
            "label for every rollout: return 0.0 for a wrong, truncated or unparsable answer instead of None."
        )
    if require_binary:
        binary = (rewards == 0) | (rewards == 1)
        if not binary.all():
            bad = sorted(set(rewards[~binary].tolist()))[:5]
            raise ValueError(
                f"REAL/GRAD use rewards as 0/1 labels, but the (weighted) rewards hold {bad}. Make the reward "
                "binary, or set require_binary_rewards=False to label rollouts by reward > reward_threshold "
                f"(now {threshold})."
            )
    return rewards > threshold


def shuffle_groups(batch: dict[str, Any], group_size: int) -> dict[str, Any]:
    """[RAL-3] Shuffle a batch of consecutive groups of ``group_size`` rows, moving whole groups.

    Drop-in for TRL's ``shuffle_sequence_dict`` (which permutes single rows): tensors with a batch
    dimension and lists are permuted in unison, 0-d tensors and ``None`` pass through.

    >>> out = shuffle_groups({"g": torch.tensor([0, 0, 1, 1, 2, 2]), "n": torch.tensor(6)}, 2)
    >>> out["g"].view(3, 2).diff(dim=1).abs().sum().item(), out["n"].item()  # pairs stay together
    (0, 6)
    """
    size = len(next(v for v in batch.values() if v is not None and not (torch.is_tensor(v) and v.ndim == 0)))
    if size % group_size:
        raise ValueError(f"batch of {size} rows is not a whole number of groups of {group_size}")
    group_order = torch.randperm(size // group_size)  # [G]
    rows = (group_order[:, None] * group_size + torch.arange(group_size)).flatten()  # [B], groups contiguous

    def permute(v):
        if v is None or (torch.is_tensor(v) and v.ndim == 0):
            return v
        if torch.is_tensor(v):
            return v[rows.to(v.device)]
        return [v[i] for i in rows.tolist()]

    return {key: permute(value) for key, value in batch.items()}


def check_whole_groups(group_ids: torch.Tensor, group_size: int) -> None:
    """[RAL-3] Raise unless ``group_ids`` ``[B]`` is a run of whole groups: consecutive blocks of
    ``group_size`` equal ids, no id in two blocks.

    >>> check_whole_groups(torch.tensor([4, 4, 1, 1]), 2)  # passes silently
    """
    B = group_ids.numel()
    blocks = group_ids.view(-1, group_size) if B % group_size == 0 else None  # [G, n]
    if blocks is None or (blocks != blocks[:, :1]).any() or blocks[:, 0].unique().numel() != blocks.shape[0]:
        raise ValueError(
            f"this batch does not hold whole groups of {group_size} rollouts (group ids {group_ids.tolist()[:16]}...). "
            "REAL couples the rollouts of a group: use per_device_train_batch_size (and per_device_eval_batch_size) "
            "divisible by num_generations, and RewardsAsLabelsGRPOTrainer's own batching."
        )


# ----------------------------------------------------------------------------- config
@dataclass
class RewardsAsLabelsGRPOConfig(GRPOConfig):
    r"""``GRPOConfig`` plus the fields of the paper's objectives. All of TRL's fields keep their meaning,
    except the loss-shaping ones listed in :mod:`rewards_as_labels.integrations.trl` (1, 6).

    Parameters:
        ral_loss (`str` or `None`, defaults to `"real"`):
            `"real"`: eq. (4), group-coupled classification (REAL). `"grad"`: per-rollout binary
            cross-entropy on s/tau (the paper's GRAD variant). `None`: TRL's own `loss_type` (baseline).
        tau (`float`, defaults to `0.5`):
            Temperature of the logits s_i/tau of REAL and GRAD; the paper uses 0.5 for both.
        reward_threshold (`float`, defaults to `0.5`):
            A rollout is a positive iff its (weighted) reward is `> reward_threshold`.
        require_binary_rewards (`bool`, defaults to `True`):
            Raise if a (weighted) reward is not exactly 0 or 1. Set `False` to binarise any reward
            with `reward_threshold` (e.g. correctness 1.0 + format bonus 0.1).

    Also required when `ral_loss` is set: `per_device_train_batch_size % num_generations == 0`
    (and the same for the eval batch), so that every slice of every process holds whole groups.
    """

    ral_loss: str | None = field(
        default="real",
        metadata={"help": "'real' (eq. 4), 'grad' (per-rollout BCE), or None for TRL's own loss_type."},
    )
    tau: float = field(default=0.5, metadata={"help": "Temperature of REAL/GRAD logits s/tau (paper: 0.5)."})
    reward_threshold: float = field(
        default=0.5, metadata={"help": "A rollout is a positive iff its (weighted) reward > reward_threshold."}
    )
    require_binary_rewards: bool = field(
        default=True, metadata={"help": "Raise on rewards other than 0/1 (False: binarise with reward_threshold)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.ral_loss, str) and self.ral_loss.lower() in ("none", "null"):
            self.ral_loss = None  # from the command line (HfArgumentParser / TrlParser)
        if self.ral_loss is None:
            return
        if self.ral_loss not in RAL_LOSSES:
            raise ValueError(f"unknown ral_loss {self.ral_loss!r}; expected one of {RAL_LOSSES} or None")
        if not (isinstance(self.tau, (int, float)) and math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau must be a finite number > 0, got {self.tau!r}")
        # [RAL-3] whole groups in every slice of every process
        if self.per_device_train_batch_size % self.num_generations:
            raise ValueError(
                f"ral_loss={self.ral_loss!r} needs per_device_train_batch_size ({self.per_device_train_batch_size}) "
                f"divisible by num_generations ({self.num_generations}): REAL couples the rollouts of a group, so a "
                "group must not be split across processes or gradient-accumulation slices."
            )
        n_eval = self.num_generations_eval or self.num_generations
        if self.do_eval and self.eval_strategy != "no" and self.per_device_eval_batch_size % n_eval:
            raise ValueError(
                f"ral_loss={self.ral_loss!r} needs per_device_eval_batch_size ({self.per_device_eval_batch_size}) "
                f"divisible by the eval group size ({n_eval})."
            )
        # [RAL-6] loss modifications REAL/GRAD do not define
        unsupported = {
            "mask_truncated_completions=True (score truncated rollouts 0 in the reward instead)": (
                self.mask_truncated_completions
            ),
            f"top_entropy_quantile={self.top_entropy_quantile} (must be 1.0)": self.top_entropy_quantile < 1.0,
            "off_policy_mask_threshold": self.off_policy_mask_threshold is not None,
            "an entropy bonus (entropy_coef / use_adaptive_entropy)": self.entropy_coef != 0.0
            or self.use_adaptive_entropy,
            "vLLM importance-sampling correction (set vllm_importance_sampling_correction=False)": self.use_vllm
            and self.vllm_importance_sampling_correction,
        }
        offending = [name for name, bad in unsupported.items() if bad]
        if offending:
            raise ValueError(f"ral_loss={self.ral_loss!r} does not support: {'; '.join(offending)}")


# ----------------------------------------------------------------------------- trainer
class RewardsAsLabelsGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` with REAL / GRAD losses; takes the same arguments, with ``args`` a
    :class:`RewardsAsLabelsGRPOConfig`. Overrides (see the module docstring for why):

        _calculate_rewards             keep the gathered per-function rewards        [RAL-2]
        _generate_and_score_completions  add ``ral_labels`` and ``ral_group_ids``      [RAL-2, RAL-3]
        _prepare_inputs                shuffle whole groups, not rows                [RAL-3]
        _compute_loss                  REAL / GRAD from :mod:`rewards_as_labels.objectives`  [RAL-1]

    With ``args.ral_loss=None`` every override defers to TRL.
    """

    _tag_names = ["trl", "grpo", "rewards-as-labels"]
    _name = "RewardsAsLabelsGRPO"

    def __init__(self, *args, **kwargs):
        config = kwargs.get("args", args[2] if len(args) > 2 else None)
        if not isinstance(config, RewardsAsLabelsGRPOConfig):
            raise TypeError(
                f"RewardsAsLabelsGRPOTrainer needs args=RewardsAsLabelsGRPOConfig(...), got {type(config).__name__}"
            )
        super().__init__(*args, **kwargs)
        self._ral_rewards_per_func = None  # [global B, n_funcs], set by _calculate_rewards
        self._ral_generations = 0  # generation batches so far: makes group ids unique across batches

    @property
    def _ral_on(self) -> bool:
        return self.args.ral_loss is not None

    # [RAL-2] TRL gathers the rewards of all processes here; keep them for the labels.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._ral_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if not self._ral_on:
            return output
        mode = "train" if self.model.training else "eval"
        n = self.num_generations if mode == "train" else self.num_generations_eval
        B = len(inputs)  # local rollouts
        # [RAL-3] the sampler must hand us whole groups: n consecutive rows of one prompt
        firsts = [inputs[i - i % n].get("prompt") for i in range(B)]
        if B % n or any(row.get("prompt") != first for row, first in zip(inputs, firsts)):
            raise ValueError(
                f"the local batch of {B} rollouts is not made of whole groups of {n} consecutive rollouts of one "
                "prompt; keep per_device_*_batch_size divisible by the group size and TRL's RepeatSampler"
            )
        # [RAL-2] labels from the rewards of *all* processes (every rank raises together, no hang)
        weights = self.reward_weights.to(self._ral_rewards_per_func.device)
        rewards_per_func = self._ral_rewards_per_func
        rewards = (rewards_per_func * weights).nansum(dim=1)  # [global B], as TRL sums them
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable rollouts
        labels = rewards_to_labels(rewards, self.args.reward_threshold, self.args.require_binary_rewards)
        grouped = labels.view(-1, n)  # [global G, n]
        self._metrics[mode]["ral/frac_mixed_groups"].append(objectives.mixed_groups(grouped).float().mean().item())
        self._metrics[mode]["ral/frac_all_correct_groups"].append(grouped.all(-1).float().mean().item())
        self._metrics[mode]["ral/frac_all_wrong_groups"].append((~grouped).all(-1).float().mean().item())

        start = self.accelerator.process_index * B  # same slice TRL takes of its advantages
        global_rows = torch.arange(start, start + B, device=labels.device)
        output["ral_labels"] = labels[start : start + B]  # [B] bool
        output["ral_group_ids"] = self._ral_generations * grouped.shape[0] + global_rows // n  # [B] int64
        self._ral_generations += 1
        return output

    # [RAL-3] TRL's `_prepare_inputs` (training branch) with `shuffle_sequence_dict` -> `shuffle_groups`.
    @profiling_decorator
    def _prepare_inputs(self, generation_batch):
        if not self._ral_on or not self.model.training:
            return super()._prepare_inputs(generation_batch)  # eval: TRL neither shuffles nor splits
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every == 0 or self._buffered_inputs is None:
            generation_batch = self._generate_and_score_completions(generation_batch)
            generation_batch = split_pixel_values_by_grid(generation_batch)
            generation_batch = shuffle_groups(generation_batch, self.num_generations)  # TRL: shuffle_sequence_dict
            generation_batches = split_tensor_dict(generation_batch, self.args.steps_per_generation)
            self._buffered_inputs = [unsplit_pixel_values_by_grid(batch) for batch in generation_batches]
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    # [RAL-1] the loss: eq. (3) then eq. (4) (REAL) or per-rollout BCE (GRAD)
    def _compute_loss(self, model, inputs):
        if not self._ral_on:
            return super()._compute_loss(model, inputs)
        mode = "train" if self.model.training else "eval"
        n = self.num_generations if mode == "train" else self.num_generations_eval
        check_whole_groups(inputs["ral_group_ids"], n)

        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [B, P+T]
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)  # [B, P+T]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]  # [B, T]
        multimodal = (
            "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
            "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids",
        )  # fmt: skip
        logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            completion_ids.size(1),  # logits_to_keep: completion tokens only
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
            **{key: inputs.get(key) for key in multimodal},
        )  # logps, entropies: [B, T]

        # Fully on-policy TRL stores no old log-probs: old = logp.detach(), s = 0 with the on-policy gradient.
        old_logps = inputs.get("old_per_token_logps")
        old_logps = logps.detach() if old_logps is None else old_logps  # [B, T]
        scores = objectives.sequence_scores(logps, old_logps, mask)  # [B], eq. (3)
        G = scores.shape[0] // n
        scores, labels = scores.view(G, n), inputs["ral_labels"].view(G, n)  # [G, n] each
        if self.args.ral_loss == "real":
            loss = objectives.real_loss(scores, labels, self.args.tau)  # eq. (4), sum over groups / G
            weights = gradients.real_weights(scores.detach(), labels, self.args.tau)  # [G, n], eq. (5)
        else:
            loss = objectives.grad_loss(scores, labels, self.args.tau)  # mean BCE over mixed-group rollouts
            weights = gradients.grad_weights(scores.detach(), labels, self.args.tau)  # [G, n], eq. (6)
        if self.beta != 0.0:
            kl = objectives.kl_penalty(logps, inputs["ref_per_token_logps"], mask)
            loss = loss + self.beta * kl

        # TRL turns off the Trainer's own gradient-accumulation scaling for GRPO, so scale here as TRL does.
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        loss = loss / normalizer
        if self.aux_loss_enabled:  # MoE load balancing, exactly as TRL adds it
            loss = loss + self.router_aux_loss_coef * aux_loss / normalizer
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())

        self._log_ral_metrics(mode, scores.detach(), labels, weights, entropies, mask)
        if self.beta != 0.0:
            self._metrics[mode]["kl"].append(self.accelerator.gather(kl.detach()).mean().item())
        return loss

    def _log_ral_metrics(self, mode, scores, labels, weights, entropies, mask):
        """One fixed-size gather per loss call (every rank calls it, so no rank can hang)."""
        mixed = objectives.mixed_groups(labels)[:, None].expand_as(labels)  # [G, n]
        pos, neg = mixed & labels, mixed & ~labels
        zero = scores.new_zeros(())
        stats = torch.stack([
            scores.sum(), scores.new_tensor(scores.numel()), scores.abs().max(),
            (entropies.detach() * mask).sum(), mask.sum().to(scores.dtype),
            weights[pos].sum(), pos.sum().to(scores.dtype), weights[pos].max() if pos.any() else zero,
            weights[neg].sum(), neg.sum().to(scores.dtype), weights[neg].max() if neg.any() else zero,
        ]).float()  # fmt: skip
        s = self.accelerator.gather(stats).view(-1, stats.numel())  # [processes, 11]
        total = s.sum(0)
        self._metrics[mode]["ral/score/mean"].append((total[0] / total[1]).item())
        self._metrics[mode]["ral/score/abs_max"].append(s[:, 2].max().item())
        self._metrics[mode]["entropy"].append((total[3] / total[4].clamp(min=1)).item())
        self._metrics[mode]["ral/weight/pos_mean"].append((total[5] / total[6].clamp(min=1)).item())
        self._metrics[mode]["ral/weight/pos_max"].append(s[:, 7].max().item())
        self._metrics[mode]["ral/weight/neg_mean"].append((total[8] / total[9].clamp(min=1)).item())
        self._metrics[mode]["ral/weight/neg_max"].append(s[:, 10].max().item())
