"""Tools around the library, each run as ``python -m rewards_as_labels.tools.<name>``:

    bench      ``make bench`` (via ``python -m rewards_as_labels bench``) and ``make bench-backends``
    bench_trl  ``make bench-trl``: our trainer against TRL's GRPOTrainer on one identical setup
    gpu_check  ``make gpu-check``: the GPU path end to end in a few minutes, with a short report
    verifier_bench  the verifier in-process against process pools (the measurement behind its default)
    notebook   run one notebook with papermill; a failure names the cell, the line and the copy to open

Nothing in the library imports them.
"""
