"""Sympy transcriptions of the paper's equations, for the read-along derivation.

``notebooks/01_derivations.ipynb`` builds each objective here as a sympy expression,
differentiates it step by step, and checks the result in two ways: symbolically against the
closed-form transcriptions below, and numerically against the torch functions of
:mod:`rewards_as_labels.gradients` at random points. Training never imports this module.

The last block, "the derivation, completed" (the notebook's sections 7-10), holds closed forms
the paper states in words or not at all: the loss without its anchor, the per-class total of
eq. (5)'s weights, the coupling d|W_k|/ds_j, the tau -> 0 limit of tau L, and GRPO's |A| as a
function of the group's composition. ``tests/test_notebooks_mutations.py`` breaks each one and
checks that the notebook then fails at the check that names it.

Conventions (as in ``objectives.py``):
    * ``s`` is the paper's score: the sequence score of eq. (3) for REAL/GRAD, the token
      log-ratio s_t for GRPO (so rho = e^s).
    * objectives are written the way the paper writes them: J (eq. 1) is maximised,
      L (eq. 4, BCE) is minimised. The weights are magnitudes |dJ/ds| or |dL/ds|.
    * labels are Python bools (True = positive, r = 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath
import numpy as np
import sympy as sp

__all__ = [
    "tau",
    "group_symbols",
    "sigmoid",
    "clip",
    "ppo_token_objective",
    "grpo_weight",
    "real_group_loss",
    "context_constant",
    "real_weight",
    "bce_loss",
    "grad_weight",
    "anchor_free_group_loss",
    "real_class_weight_sum",
    "real_weight_coupling",
    "real_zero_temperature_loss",
    "grpo_abs_advantage",
    "evaluate",
]

#: the REAL/GRAD temperature, a positive symbol so that sympy can simplify e^{s/tau} > 0
tau = sp.Symbol("tau", positive=True)


def group_symbols(n_pos: int, n_neg: int) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    """Real score symbols for one group: positives ``s_1..s_{n_pos}``, then the negatives.

    >>> group_symbols(2, 1)
    ((s_1, s_2), (s_3,))
    """
    if n_pos < 0 or n_neg < 0:
        raise ValueError(f"group sizes must be >= 0, got n_pos={n_pos}, n_neg={n_neg}")
    symbols = sp.symbols(f"s_1:{n_pos + n_neg + 1}", real=True)
    return tuple(symbols[:n_pos]), tuple(symbols[n_pos:])


def sigmoid(z: sp.Expr) -> sp.Expr:
    """sigma(z) = 1 / (1 + e^{-z})."""
    return 1 / (1 + sp.exp(-z))


def clip(x: sp.Expr, low: sp.Expr, high: sp.Expr) -> sp.Expr:
    """clip(x, low, high) = max(low, min(x, high))."""
    return sp.Max(low, sp.Min(x, high))


# ----------------------------------------------------------------------------- eqs. (1), (2)
def ppo_token_objective(s: sp.Expr, advantage: sp.Expr, eps_low: sp.Expr, eps_high: sp.Expr) -> sp.Expr:
    """Summand of eq. (1): min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) with rho = e^s."""
    rho = sp.exp(s)
    return sp.Min(rho * advantage, clip(rho, 1 - eps_low, 1 + eps_high) * advantage)


def grpo_weight(s: sp.Expr, abs_advantage: sp.Expr, eps: sp.Expr, positive: bool) -> sp.Expr:
    """Eq. (2): |W_GRPO| = |A| e^s where the unclipped branch is active, 0 where the clip cuts.

    The clip cuts a positive (A > 0) once rho > 1 + eps and a negative (A < 0) once
    rho < 1 - eps, the same strict inequalities as ``objectives.clipped_surrogate``.
    """
    active = s <= sp.log(1 + eps) if positive else s >= sp.log(1 - eps)
    return sp.Piecewise((abs_advantage * sp.exp(s), active), (0, True))


# ----------------------------------------------------------------------------- eqs. (4), (5)
def real_group_loss(pos: Sequence[sp.Expr], neg: Sequence[sp.Expr], t: sp.Expr = tau) -> sp.Expr:
    """Eq. (4): log(1 + sum_{i in O+} e^{-s_i/tau}) + log(1 + sum_{j in O-} e^{s_j/tau})."""
    return sp.log(1 + sum(sp.exp(-s / t) for s in pos)) + sp.log(1 + sum(sp.exp(s / t) for s in neg))


def context_constant(others: Sequence[sp.Expr], positive: bool, t: sp.Expr = tau) -> sp.Expr:
    """C+ = 1 + sum e^{-s_i/tau} over the *other* positives, or C- = 1 + sum e^{s_j/tau}
    over the other negatives (eq. 5). ``others`` are the scores of the rest of k's class."""
    sign = -1 if positive else 1
    return sp.Add(1, *(sp.exp(sign * s / t) for s in others))  # a sympy 1 when k is alone in its class


def real_weight(s_k: sp.Expr, c: sp.Expr, positive: bool, t: sp.Expr = tau) -> sp.Expr:
    """Eq. (5): (1/tau) / (1 + C+ e^{s_k/tau}) for a positive, (1/tau) / (1 + C- e^{-s_k/tau})
    for a negative."""
    sign = 1 if positive else -1
    return (1 / t) / (1 + c * sp.exp(sign * s_k / t))


# ----------------------------------------------------------------------------- GRAD, eq. (6)
def bce_loss(s: sp.Expr, label: bool, t: sp.Expr = tau) -> sp.Expr:
    """GRAD's per-rollout loss: binary cross-entropy of the logit z = s/tau with label r,
    -(r log sigma(z) + (1 - r) log(1 - sigma(z)))."""
    p = sigmoid(s / t)
    return -sp.log(p) if label else -sp.log(1 - p)


def grad_weight(s: sp.Expr, positive: bool, t: sp.Expr = tau) -> sp.Expr:
    """Eq. (6): (1/tau) sigma(-s/tau) for a positive, (1/tau) sigma(s/tau) for a negative."""
    return sigmoid(-s / t if positive else s / t) / t


# ----------------------------------------------------------------------------- the derivation, completed
def anchor_free_group_loss(pos: Sequence[sp.Expr], neg: Sequence[sp.Expr], t: sp.Expr = tau) -> sp.Expr:
    """Eq. (4) without the anchor logit (no "1 +"): log(sum_{O+} e^{-s_i/tau}) + log(sum_{O-} e^{s_j/tau}).

    Not a loss of the package: the counterfactual that shows what the anchor buys. A lone
    positive's term is -s/tau, unbounded below, with the constant weight 1/tau:

    >>> s = sp.Symbol("s", real=True)
    >>> anchor_free_group_loss([s], [sp.Integer(0)])  # the negative's term is log(e^0) = 0
    -s/tau
    """
    if not pos or not neg:
        raise ValueError(f"the anchor-free loss needs both labels, got {len(pos)} positives, {len(neg)} negatives")
    return sp.log(sum(sp.exp(-s / t) for s in pos)) + sp.log(sum(sp.exp(s / t) for s in neg))


def real_class_weight_sum(class_scores: Sequence[sp.Expr], positive: bool, t: sp.Expr = tau) -> sp.Expr:
    """Closed form of sum_{k in class} |W_k| of eq. (5) over one class of a group:

        (1/tau) (1 - 1 / (1 + sum_{i in O+} e^{-s_i/tau}))   for the positives,
        (1/tau) (1 - 1 / (1 + sum_{j in O-} e^{s_j/tau}))    for the negatives.

    The weights of a class are (1/tau) times a softmax over the class and the anchor logit; the
    anchor's share 1/(1 + sum) is what keeps the class total strictly below 1/tau. Returned as
    (1/tau) U / (1 + U), U = the sum, the same value without the cancellation of 1 - 1/(1 + U)
    when U is tiny (so that it evaluates accurately at any precision).

    >>> real_class_weight_sum([sp.Integer(0), sp.Integer(0)], True)  # on-policy pair: 2/3 of 1/tau
    2/(3*tau)
    """
    sign = -1 if positive else 1
    u = sum(sp.exp(sign * s / t) for s in class_scores)
    return (1 / t) * u / (1 + u)


def real_weight_coupling(w_k: sp.Expr, w_j: sp.Expr, positive: bool) -> sp.Expr:
    """d|W_k|/ds_j for two different rollouts k != j of the same class, in terms of their weights:

        +|W_k| |W_j|  for positives (a rising positive j lowers C+_k, so k gets more weight),
        -|W_k| |W_j|  for negatives (a rising negative j raises C-_k, so k gets less).

    (With u_i = e^{-s_i/tau}, U = sum_{O+} u_i: |W_k| = (u_k/tau)/(1 + U) and du_j/ds_j = -u_j/tau,
    so d|W_k|/ds_j = u_k u_j / (tau^2 (1 + U)^2) = |W_k||W_j|; the same with the sign flipped for
    negatives.) Across classes the derivative is 0: eq. (4) is a sum of one term per class.

    >>> real_weight_coupling(sp.Rational(1, 2), sp.Rational(1, 3), positive=False)
    -1/6
    """
    return (1 if positive else -1) * w_k * w_j


def real_zero_temperature_loss(pos: Sequence[sp.Expr], neg: Sequence[sp.Expr]) -> sp.Expr:
    """lim_{tau -> 0+} tau L_REAL = max(0, -min_{O+} s_i) + max(0, max_{O-} s_j): a hinge at
    margin 0 on the worst positive and the worst negative of the group (the anchor is the 0).

    >>> real_zero_temperature_loss([sp.Integer(-1), sp.Integer(2)], [sp.Rational(1, 2)])  # 1 + 1/2
    3/2
    """
    return sp.Max(0, -sp.Min(*pos)) + sp.Max(0, sp.Max(*neg))


GRPO_EPS = sp.Rational(1, 10**6)  # the eps of GRPO's advantage denominator, exactly


def grpo_abs_advantage(n_pos: sp.Expr, n: sp.Expr, positive: bool, eps: sp.Expr = GRPO_EPS) -> sp.Expr:
    """|A| of GRPO's group advantage (r - mean r) / (std r + eps), unbiased std, for a positive or
    a negative of a group with n_pos positives out of n rollouts (0 < n_pos < n):

        |A+| = ((n - p)/n) / (sqrt(p (n - p) / (n (n - 1))) + eps),  |A-| = (p/n) / (same).

    >>> grpo_abs_advantage(1, 4, positive=True, eps=0), grpo_abs_advantage(1, 4, positive=False, eps=0)
    (3/2, 1/2)
    """
    n_pos, n = sp.sympify(n_pos), sp.sympify(n)  # exact rationals for Python ints
    std = sp.sqrt(n_pos * (n - n_pos) / (n * (n - 1)))
    return ((n - n_pos) / n if positive else n_pos / n) / (std + eps)


# ----------------------------------------------------------------------------- numerics
def evaluate(expr: sp.Expr, symbols: Sequence[sp.Symbol], points, dps: int = 30) -> np.ndarray:
    """Evaluate ``expr`` at each row of ``points`` (``[n_points, len(symbols)]``) in mpmath at
    ``dps`` significant digits and return float64 values ``[n_points]``.

    The float64 inputs are taken exactly, so the result is the correctly rounded value of the
    expression at those inputs: a reference for the torch closed forms, free of their own
    rounding. Heaviside steps (from differentiating min/max) are rewritten as Piecewise.

    >>> s = sp.Symbol("s")
    >>> evaluate(sp.exp(s), [s], [[0.0], [1.0]])
    array([1.        , 2.71828183])
    """
    fn = sp.lambdify(list(symbols), sp.sympify(expr).rewrite(sp.Piecewise), modules="mpmath")
    points = np.asarray(points, dtype=np.float64).reshape(-1, len(symbols))
    with mpmath.workdps(dps):
        return np.array([float(fn(*(mpmath.mpf(float(v)) for v in row))) for row in points])
