"""Fit LR rules from sweep data: sweep tables -> curves -> optima -> rule -> calibration file.

    sweep.py     readers (tinker-cookbook sft_sweep.md, CSV, JSONL) -> Sweep
    regret.py    the issue-6 score: f(lr) per model and regret(lr)
    features.py  model facts from the catalogue (never from the sweep file)
    fit.py       best swept LR per model, rule shapes, censored weighted least squares in log(lr)
    evaluate.py  in-sample, leave-one-group-out (plain and nested) regret, published and constant baselines
    plot.py      per-model f(lr) panels (matplotlib, the `plot` extra)
"""
