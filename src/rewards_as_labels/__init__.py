"""Reference reproduction of "Rewards as Labels: Revisiting RLVR from a Classification Perspective".

Equation numbers (1)-(6) are those of the repository's paper summary, ``docs/paper.md``.

Modules:
    objectives  -- one pure function per loss of the paper (eqs. 1, 3, 4, GRAD, DAPO, GSPO)
    gradients   -- the closed-form gradient weights (eqs. 2, 5, 6) tested against autograd
    config      -- the one typed configuration and its YAML profiles
"""

__version__ = "0.1.0"
