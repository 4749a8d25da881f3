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
    [families.llama.fit]        # optional: fit quality, shown in explanations
    mean_regret = 0.0057
    [default]                   # optional: a cross-family rule for families with no entry
    standalone = false          # optional (top level): true = do not fall back on the published rules

A file overrides the published rules family by family. Without --calibration or
LORAPLAN_CALIBRATION, loraplan uses the calibration it ships (default_calibration.toml, fitted on
tinker-cookbook's SFT sweep by `loraplan calibrate`); `published_calibration()` is the formula as
tinker-cookbook publishes it.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from loraplan.errors import CalibrationError, LoraplanError
from loraplan.rules.numbers import fmt_number
from loraplan.rules.sources import TINKER_HPARAMS
from loraplan.userfiles import read_user_text

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

    def describe(self, facts: ModelTraits | None = None, multiplier: float | None = None) -> str:
        """One line a person can check by hand.

        `multiplier` is the LoRA/full fine-tuning ratio applied (10, or 1 for full fine-tuning); without
        it the text names both. With a model's traits, only the variant that applies to it.
        """
        ratio = (f"{multiplier:g}" if multiplier is not None
                 else f"{self.lora_multiplier:g} (LoRA, 1 for full fine-tuning)")
        common = f"{fmt_number(self.base, 4)} * {ratio}"
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


MAX_CALIBRATION_BYTES = 1024 * 1024  # a calibration file is a few kilobytes
_Exponent = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-10.0, le=10.0)]
_Factor = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0.0, le=1e6)]


class _RuleTable(BaseModel):
    """One `[families.NAME]` or `[default]` table, validated where it is read: an LR rule must give a
    positive finite LR, so the base and multipliers are positive and finite, exponents finite and
    within +-10 (the published ones are below 1), and an unknown key (a typo) is an error, not a default."""

    model_config = ConfigDict(extra="forbid")

    base: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0.0, le=1.0)]
    exponent: _Exponent
    params_exponent: _Exponent = 0.0
    active_params_exponent: _Exponent = 0.0
    hybrid_active_params_exponent: _Exponent | None = None
    hybrid_multiplier: _Factor = 1.0
    moe_multiplier: _Factor = 1.0
    lora_multiplier: _Factor = 10.0
    provenance: StrictStr = ""
    models: list[StrictStr] = []
    fit: dict[str, Any] = {}


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "is not a calibration setting (a typo?)"
    return str(error["msg"]).replace("Input should", "should")


def _rule(family: str, table: Any, where: str) -> FamilyRule:
    if not isinstance(table, dict):
        raise CalibrationError(f"{where}: must be a table")
    try:
        fields = _RuleTable.model_validate(table)
    except ValidationError as exc:
        problems = "; ".join(f"`{'.'.join(str(p) for p in e['loc'])}` {_reason(e)}" for e in exc.errors())
        raise CalibrationError(f"{where}: {problems}") from None
    return FamilyRule(
        family=family,
        base=fields.base,
        exponent=fields.exponent,
        params_exponent=fields.params_exponent,
        active_params_exponent=fields.active_params_exponent,
        hybrid_active_params_exponent=fields.hybrid_active_params_exponent,
        hybrid_multiplier=fields.hybrid_multiplier,
        moe_multiplier=fields.moe_multiplier,
        lora_multiplier=fields.lora_multiplier,
        provenance=fields.provenance,
        models=tuple(fields.models),
        fit={k: float(v) for k, v in fields.fit.items() if isinstance(v, int | float) and not isinstance(v, bool)},
    )


def load_calibration(path: str | Path) -> Calibration:
    """Parse a calibration TOML; its families override the published ones."""
    file = Path(path)
    try:
        text = read_user_text(file, what="calibration file", max_bytes=MAX_CALIBRATION_BYTES)
        data = tomllib.loads(text)
    except LoraplanError as exc:
        raise CalibrationError(str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise CalibrationError(f"{file}: not valid TOML ({exc})") from exc
    except RecursionError as exc:
        raise CalibrationError(f"{file}: not valid TOML (nested too deeply)") from exc
    except ValueError as exc:  # Python's limit on digits in an integer
        limit = sys.get_int_max_str_digits()
        raise CalibrationError(f"{file}: not valid TOML (a number over {limit:,} digits)") from exc
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
