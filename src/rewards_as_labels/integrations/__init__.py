"""Thin adapters that run the paper's objectives inside third-party trainers.

Submodules are imported explicitly so that their dependency stays optional:

    trl -- ``RewardsAsLabelsGRPOTrainer`` / ``RewardsAsLabelsGRPOConfig``: REAL and GRAD as
           losses of TRL's ``GRPOTrainer`` (needs ``trl`` and ``accelerate``), e.g.
           ``from rewards_as_labels.integrations.trl import RewardsAsLabelsGRPOTrainer``.
"""
