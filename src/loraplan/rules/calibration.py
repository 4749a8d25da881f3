"""Calibration files: LR rules per family, with provenance and fit quality.

Format (TOML):

    source = "what data this came from"        # optional
    [families.llama]
    base = 5e-5                 # full fine-tuning LR at hidden size 2000
    exponent = 0.781            # P in (2000 / hidden) ** P
    params_exponent = 0.0       # optional Q in (total_params / 1e9) ** -Q
    active_params_exponent = 0.0  # optional R in (active_params / 1e9) ** -R
    hybrid_active_params_exponent = 0.0  # optional R for hybrid-attention models (absent: the same R)
    hybrid_multiplier = 1.0     # optional factor for hybrid linear-attention / Mamba models
    moe_multiplier = 1.0        # optional factor for mixture-of-experts models
    lora_multiplier = 10.0      # optional; LoRA / full-FT ratio
    provenance = "tinker-cookbook hyperparam_utils"
    models = ["meta-llama/Llama-3.1-8B"]       # optional: models the rule was fitted on
    regret_slope = 0.011        # optional: median regret per unit of log(lr) of the fitted curves
    censored_models = []        # optional: models whose best swept LR was the grid's end
    [families.llama.fit]        # optional: fit quality, shown in explanations
    mean_regret = 0.0057
    [families.llama.swept_lr]   # optional: lowest and highest LR swept per model (where the rule was measured)
    "meta-llama/Llama-3.1-8B" = [4e-5, 3e-3]
    [default]                   # optional: a cross-family rule for families with no entry
    standalone = false          # optional (top level): true = do not fall back on the published rules

A file overrides the published rules family by family. Without --calibration or
LORAPLAN_CALIBRATION, loraplan uses the calibration it ships (default_calibration.toml, fitted on
tinker-cookbook's SFT sweep by `loraplan calibrate`); `published_calibration()` is the formula as
tinker-cookbook publishes it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from loraplan.errors import CalibrationError
from loraplan.rules.sources import TINKER_HPARAMS

ENV_VAR = "LORAPLAN_CALIBRATION"
DEFAULT_FILE = Path(__file__).resolve().parent / "default_calibration.toml"
_REFERENCE_HIDDEN = 2000
_PARAMS_UNIT = 1e9


@dataclass(frozen=True)
class FamilyRule:
    """lr_full = base * (2000/hidden)^exponent * (params/1e9)^-params_exponent
    * (active/1e9)^-R * hybrid_multiplier [if hybrid] * moe_multiplier [if MoE]; LoRA x lora_multiplier.
    R is active_params_exponent, or hybrid_active_params_exponent for a hybrid-attention model when
    set (on tinker-cookbook's sweep the best LR falls with size for full-attention models only).
    The optional terms default to neutral, so older files keep their meaning.
    """

    family: str
    base: float
    exponent: float
    params_exponent: float = 0.0
    lora_multiplier: float = 10.0
    provenance: str = ""
    models: tuple[str, ...] = ()
    fit: dict[str, float] = field(default_factory=dict)
    active_params_exponent: float = 0.0
    hybrid_multiplier: float = 1.0
    moe_multiplier: float = 1.0
    hybrid_active_params_exponent: float | None = None
    regret_slope: float | None = None
    swept_lr: dict[str, tuple[float, float]] = field(default_factory=dict)
    censored_models: tuple[str, ...] = ()  # best swept LR at the grid's end: the optimum may lie beyond

    def _active_exponent(self, hybrid: bool) -> float:
        if hybrid and self.hybrid_active_params_exponent is not None:
            return self.hybrid_active_params_exponent
        return self.active_params_exponent

    def lr_full_ft(self, hidden_size: int, total_params: int | None = None, facts: ModelTraits | None = None) -> float:
        lr = self.base * (_REFERENCE_HIDDEN / hidden_size) ** self.exponent
        if self.params_exponent:
            if not total_params:
                raise CalibrationError(f"rule for `{self.family}` needs the model's parameter count")
            lr *= (total_params / _PARAMS_UNIT) ** -self.params_exponent
        if (self.active_params_exponent or self.hybrid_active_params_exponent or self.hybrid_multiplier != 1.0
                or self.moe_multiplier != 1.0):
            if facts is None:
                raise CalibrationError(f"rule for `{self.family}` needs the model's active parameters, attention "
                                       "type and MoE flag (pass the architecture's traits)")
            if exponent := self._active_exponent(facts.hybrid):
                lr *= (facts.active_params / _PARAMS_UNIT) ** -exponent
            if facts.hybrid:
                lr *= self.hybrid_multiplier
            if facts.moe:
                lr *= self.moe_multiplier
        return lr

    def lr_lora(self, hidden_size: int, total_params: int | None, default_ratio: float,
                facts: ModelTraits | None = None) -> float:
        ratio = default_ratio if self.lora_multiplier == 10.0 else self.lora_multiplier
        return self.lr_full_ft(hidden_size, total_params, facts) * ratio

    def describe(self, facts: ModelTraits | None = None) -> str:
        """One line a person can check by hand (M: 10 for LoRA, 1 for full fine-tuning).

        With a model's traits, only the variant that applies to it (full or hybrid attention).
        """
        common = f"{self.base:.4g} * M"
        if self.exponent:
            common += f" * (2000/hidden)^{self.exponent:.4g}"
        if self.params_exponent:
            common += f" * (params/1e9)^-{self.params_exponent:.4g}"
        moe = f" * {self.moe_multiplier:.4g} if MoE" if self.moe_multiplier != 1.0 else ""

        def variant(hybrid: bool) -> str:
            text = common
            if exponent := self._active_exponent(hybrid):
                text += f" * (active/1e9)^-{exponent:.4g}"
            if hybrid and self.hybrid_multiplier != 1.0:
                text += f" * {self.hybrid_multiplier:.4g}"
            return text + moe

        full, hybrid = variant(False), variant(True)
        name = "cross-family rule" if self.family == "default" else f"{self.family} rule"
        if full == hybrid:
            return f"{name}: {full}"
        if facts is not None:
            return f"{name}: {hybrid if facts.hybrid else full} ({'hybrid' if facts.hybrid else 'full'} attention)"
        return f"{name}: {full} with full attention; {hybrid} with hybrid attention"


HYBRID_ATTENTION = frozenset({"hybrid-linear", "hybrid-mamba"})  # Architecture/ModelFacts attention types


class _HasTraits(Protocol):
    @property
    def active_params(self) -> int: ...
    @property
    def attention_type(self) -> str: ...
    @property
    def is_moe(self) -> bool: ...


@dataclass(frozen=True)
class ModelTraits:
    """The facts beyond family and hidden size that fitted rules may use.

    active_params: parameters one token passes through (all of them for a dense model).
    hybrid: linear-attention or Mamba layers mixed with full attention.
    moe: a mixture-of-experts model.
    """

    active_params: int
    hybrid: bool
    moe: bool

    @classmethod
    def of(cls, arch: _HasTraits) -> ModelTraits:
        """The traits of an Architecture (or anything with its three facts)."""
        return cls(arch.active_params, arch.attention_type in HYBRID_ATTENTION, arch.is_moe)


@dataclass(frozen=True)
class Calibration:
    rules: dict[str, FamilyRule]
    source: str
    default: FamilyRule | None = None
    path: Path | None = None

    def rule_for(self, family: str, model_id: str | None = None) -> FamilyRule | None:
        """The family's own rule, else the cross-family default, else None."""
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
    models = _model_list(table, "models", where)
    multipliers = {key: _number(table, key, where, 1.0) for key in ("hybrid_multiplier", "moe_multiplier")}
    slope = _number(table, "regret_slope", where) if "regret_slope" in table else None
    if slope is not None and slope <= 0:
        raise CalibrationError(f"{where}: `regret_slope` must be positive")
    if any(value <= 0 for value in multipliers.values()):
        raise CalibrationError(f"{where}: multipliers must be positive")
    return FamilyRule(
        family=family,
        base=base,
        exponent=_number(table, "exponent", where),
        params_exponent=_number(table, "params_exponent", where, 0.0),
        active_params_exponent=_number(table, "active_params_exponent", where, 0.0),
        hybrid_active_params_exponent=(_number(table, "hybrid_active_params_exponent", where)
                                       if "hybrid_active_params_exponent" in table else None),
        hybrid_multiplier=multipliers["hybrid_multiplier"],
        moe_multiplier=multipliers["moe_multiplier"],
        lora_multiplier=_number(table, "lora_multiplier", where, 10.0),
        provenance=str(table.get("provenance", "")),
        models=models,
        fit={k: float(v) for k, v in fit.items() if isinstance(v, int | float) and not isinstance(v, bool)},
        regret_slope=slope,
        swept_lr=_swept(table.get("swept_lr", {}), f"{where}.swept_lr"),
        censored_models=_model_list(table, "censored_models", where),
    )


def _model_list(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    models = table.get(key, [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise CalibrationError(f"{where}: `{key}` must be a list of model ids")
    return tuple(models)


def _swept(table: Any, where: str) -> dict[str, tuple[float, float]]:
    """model -> (lowest, highest) swept LR, each pair positive and ordered."""
    if not isinstance(table, dict):
        raise CalibrationError(f"{where}: must be a table of model = [lowest LR, highest LR]")
    out: dict[str, tuple[float, float]] = {}
    for model, pair in table.items():
        ok = (isinstance(pair, list) and len(pair) == 2
              and all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in pair))
        if not ok or pair[0] > pair[1]:
            raise CalibrationError(f"{where}: `{model}` must be [lowest LR, highest LR], got {pair!r}")
        out[model] = (float(pair[0]), float(pair[1]))
    return out


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
    standalone = data.get("standalone", False)
    if not isinstance(standalone, bool):
        raise CalibrationError(f"{file}: `standalone` must be true or false")
    return own if standalone else own.merged_over(published_calibration())


@cache
def default_calibration() -> Calibration:
    """The shipped calibration fitted on tinker-cookbook's sweep; the published rules if it is absent."""
    return load_calibration(DEFAULT_FILE) if DEFAULT_FILE.is_file() else published_calibration()


def resolve_calibration(path: str | Path | None) -> Calibration:
    """An explicit file, else LORAPLAN_CALIBRATION, else the shipped default calibration."""
    chosen = path or os.environ.get(ENV_VAR)
    return load_calibration(chosen) if chosen else default_calibration()
