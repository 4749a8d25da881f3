"""A fitted rule as a calibration file (the TOML format of loraplan.rules.calibration).

The fitted log lr_lora = a_family + b_hidden * log(hidden/2000) + b_active * log(active/1e9)
+ b_active_full * log(active/1e9) [full attention only] + b_total * log(total/1e9) + b_hybrid * [hybrid]
+ b_moe * [MoE] maps onto FamilyRule exactly: base = exp(a_family) / 10, exponent = -b_hidden,
active_params_exponent = -(b_active + b_active_full), hybrid_active_params_exponent = -b_active,
params_exponent = -b_total, hybrid_multiplier = exp(b_hybrid), moe_multiplier = exp(b_moe).
The file is standalone: a family it has no data for gets its cross-family rule, not the published
formula, so `lr --calibration FILE` gives exactly what the evaluation scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from loraplan.calibrate.evaluate import Evaluation
from loraplan.calibrate.fit import FittedRule
from loraplan.rules.lr import LORA_MULTIPLIER


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _rule_lines(rule: FittedRule, intercept: float, provenance: str, models: Sequence[str]) -> list[str]:
    slopes = rule.slopes
    return [
        f"base = {_value(math.exp(intercept) / LORA_MULTIPLIER)}",
        f"exponent = {_value(-slopes.get('hidden', 0.0) + 0.0)}",
        f"params_exponent = {_value(-slopes.get('total', 0.0) + 0.0)}",
        f"active_params_exponent = {_value(-slopes.get('active', 0.0) - slopes.get('active_full', 0.0) + 0.0)}",
        f"hybrid_active_params_exponent = {_value(-slopes.get('active', 0.0) + 0.0)}",
        f"hybrid_multiplier = {_value(math.exp(slopes.get('hybrid', 0.0)))}",
        f"moe_multiplier = {_value(math.exp(slopes.get('moe', 0.0)))}",
        f"lora_multiplier = {_value(LORA_MULTIPLIER)}",
        f"provenance = {_value(provenance)}",
        f"models = {_value(list(models))}",
    ]


def calibration_toml(evaluation: Evaluation, sweep_files: Sequence[str]) -> str:
    """The whole file: header, overall fit quality, one table per family with data, the default."""
    rule = evaluation.rule
    names = ", ".join(Path(f).name for f in sweep_files)
    n_models = len(evaluation.rows)
    how = (f"fitted by `loraplan calibrate` on {names} ({n_models} models): least squares of each model's best "
           f"swept LR in log(lr), weighted by regret slope squared, grid ends censored, family offsets shrunk; "
           f"rule shape `{evaluation.shape.name}`, chosen by leave-one-group-out regret")
    provenance = (f"fitted by `loraplan calibrate` on {names} ({n_models} models; leave-one-group-out regret "
                  f"mean {evaluation.logo.mean:.2%}, max {evaluation.logo.max:.2%})")
    rows = {r.model: r for r in evaluation.rows}
    lines = [
        f"# Written by `loraplan calibrate {' '.join(Path(f).name for f in sweep_files)}`; regenerate, do not edit.",
        "# Regrets are fractions: (f(lr) - min f) / min f, f = test NLL minimised over ranks.",
        f"source = {_value(how)}",
        "standalone = true",
        f"rule_shape = {_value(evaluation.shape.name)}",
        "",
        "[fit]",
        f"models = {n_models}",
        f"logo_mean_regret = {_value(evaluation.logo.mean)}",
        f"logo_max_regret = {_value(evaluation.logo.max)}",
        f"in_sample_mean_regret = {_value(evaluation.in_sample.mean)}",
        f"in_sample_max_regret = {_value(evaluation.in_sample.max)}",
        *([f"published_mean_regret = {_value(evaluation.published.mean)}",
           f"published_max_regret = {_value(evaluation.published.max)}"] if evaluation.published.covered else []),
        f"published_models = {evaluation.published.covered}",
        f"best_constant_lr = {_value(evaluation.constant_lr)}",
        f"best_constant_mean_regret = {_value(evaluation.constant.mean)}",
        f"best_constant_max_regret = {_value(evaluation.constant.max)}",
    ]
    for family in sorted(rule.intercepts):
        models = rule.models.get(family, ())
        logo = [rows[m].fitted_regret for m in models]
        ins = [rows[m].in_sample_regret for m in models]
        lines += ["", f"[families.{_value(family)}]"]
        lines += _rule_lines(rule, rule.intercepts[family], provenance, models)
        lines += [f"[families.{_value(family)}.fit]",
                  f"models = {len(models)}",
                  f"in_sample_mean_regret = {_value(sum(ins) / len(ins))}",
                  f"logo_mean_regret = {_value(sum(logo) / len(logo))}",
                  f"logo_max_regret = {_value(max(logo))}"]
    everyone = [m for ms in rule.models.values() for m in ms]
    lines += ["", "[default]"]
    lines += _rule_lines(rule, rule.default_intercept,
                         provenance + "; cross-family term: the shared intercept the family offsets shrink toward",
                         everyone)
    return "\n".join(lines) + "\n"
