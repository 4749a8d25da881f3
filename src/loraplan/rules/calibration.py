"""Calibration files: LR rules per family, with provenance and fit quality.

Format (TOML):

    source = "what data this came from"        # optional
    [families.llama]
    base = 5e-5                 # full fine-tuning LR at hidden size 2000
    exponent = 0.781            # P in (2000 / hidden) ** P
    params_exponent = 0.0       # optional Q in (total_params / 1e9) ** -Q
    lora_multiplier = 10.0      # optional; LoRA / full-FT ratio
    provenance = "tinker-cookbook hyperparam_utils"
    models = ["meta-llama/Llama-3.1-8B"]       # optional: models the rule was fitted on
    [families.llama.fit]        # optional: fit quality, shown in explanations
    mean_regret = 0.0057
    [default]                   # optional: a cross-family rule for families with no entry

A file overrides the published rules family by family. LORAPLAN_CALIBRATION names a default file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from loraplan.errors import CalibrationError
from loraplan.rules.sources import TINKER_HPARAMS

ENV_VAR = "LORAPLAN_CALIBRATION"
_REFERENCE_HIDDEN = 2000
_PARAMS_UNIT = 1e9


@dataclass(frozen=True)
class FamilyRule:
    """lr_full = base * (2000/hidden)^exponent * (params/1e9)^-params_exponent; LoRA x multiplier."""

    family: str
    base: float
    exponent: float
    params_exponent: float = 0.0
    lora_multiplier: float = 10.0
    provenance: str = ""
    models: tuple[str, ...] = ()
    fit: dict[str, float] = field(default_factory=dict)

    def lr_full_ft(self, hidden_size: int, total_params: int | None = None) -> float:
        lr = self.base * (_REFERENCE_HIDDEN / hidden_size) ** self.exponent
        if self.params_exponent:
            if not total_params:
                raise CalibrationError(f"rule for `{self.family}` needs the model's parameter count")
            lr *= (total_params / _PARAMS_UNIT) ** -self.params_exponent
        return lr

    def lr_lora(self, hidden_size: int, total_params: int | None, default_ratio: float) -> float:
        ratio = default_ratio if self.lora_multiplier == 10.0 else self.lora_multiplier
        return self.lr_full_ft(hidden_size, total_params) * ratio

    def describe(self) -> str:
        text = f"{self.base:g} * M * (2000/hidden)^{self.exponent:g}"
        if self.params_exponent:
            text += f" * (params/1e9)^-{self.params_exponent:g}"
        return f"{self.family} rule: {text}"


@dataclass(frozen=True)
class Calibration:
    rules: dict[str, FamilyRule]
    source: str
    default: FamilyRule | None = None
    path: Path | None = None

    def rule_for(self, family: str, model_id: str | None = None) -> FamilyRule | None:
        return self.rules.get(family) or self.default

    def merged_over(self, base: Calibration) -> Calibration:
        """This file's families on top of `base`'s."""
        return Calibration({**base.rules, **self.rules}, self.source, self.default or base.default, self.path)


PUBLISHED_RULES = {
    "llama": FamilyRule("llama", 5e-5, 0.781, provenance=TINKER_HPARAMS),
    "qwen": FamilyRule("qwen", 5e-5, 0.0775, provenance=TINKER_HPARAMS),
}


@cache
def published_calibration() -> Calibration:
    """The published tinker-cookbook rule: Llama and Qwen only."""
    return Calibration(dict(PUBLISHED_RULES), TINKER_HPARAMS)


def _number(table: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = table.get(key, default)
    if value is None:
        raise CalibrationError(f"{where}: missing `{key}`")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalibrationError(f"{where}: `{key}` must be a number, got {value!r}")
    return float(value)


def _rule(family: str, table: Any, where: str) -> FamilyRule:
    if not isinstance(table, dict):
        raise CalibrationError(f"{where}: must be a table")
    base = _number(table, "base", where)
    if base <= 0:
        raise CalibrationError(f"{where}: `base` must be positive")
    fit = table.get("fit", {})
    if not isinstance(fit, dict):
        raise CalibrationError(f"{where}.fit: must be a table")
    models = table.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise CalibrationError(f"{where}: `models` must be a list of model ids")
    return FamilyRule(
        family=family,
        base=base,
        exponent=_number(table, "exponent", where),
        params_exponent=_number(table, "params_exponent", where, 0.0),
        lora_multiplier=_number(table, "lora_multiplier", where, 10.0),
        provenance=str(table.get("provenance", "")),
        models=tuple(models),
        fit={k: float(v) for k, v in fit.items() if isinstance(v, int | float) and not isinstance(v, bool)},
    )


def load_calibration(path: str | Path) -> Calibration:
    """Parse a calibration TOML; its families override the published ones."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CalibrationError(f"{file}: cannot read calibration file ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{file}: not valid TOML ({exc})") from exc
    families = data.get("families", {})
    if not isinstance(families, dict):
        raise CalibrationError(f"{file}: `families` must be a table")
    rules = {name: _rule(name, table, f"{file}: families.{name}") for name, table in families.items()}
    default = _rule("default", data["default"], f"{file}: default") if "default" in data else None
    own = Calibration(rules, str(data.get("source", file)), default, file)
    return own.merged_over(published_calibration())


def resolve_calibration(path: str | Path | None) -> Calibration:
    """An explicit file, else LORAPLAN_CALIBRATION, else the published rules."""
    chosen = path or os.environ.get(ENV_VAR)
    return load_calibration(chosen) if chosen else published_calibration()
