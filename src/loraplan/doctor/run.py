"""Build the context for one config (model, tokens, trainer defaults) and run every check."""

from __future__ import annotations

from pathlib import Path

from loraplan.arch.model import Architecture
from loraplan.doctor.checks import run_checks
from loraplan.doctor.context import CheckContext
from loraplan.doctor.findings import Report
from loraplan.errors import LoraplanError
from loraplan.formats.detect import Detected
from loraplan.rules.calibration import Calibration
from loraplan.setup import TrainingSetup


def resolve_model(setup: TrainingSetup, override: str | None, trust_remote_code: bool = False
                  ) -> tuple[Architecture | None, str]:
    """The model to check against, and a note saying where it came from or why there is none.

    A model named by --model must load (its error is the user's to fix); one named inside the
    config may be a path on another machine, so failing to load it only skips the model checks.
    """
    from loraplan.arch.sources import load_architecture

    if override is not None:
        arch = load_architecture(override, trust_remote_code)
        return arch, f"{arch.model_id} from --model ({arch.source})"
    if setup.model is None:
        return None, "the config names no model; pass --model"
    try:
        arch = load_architecture(setup.model, trust_remote_code)
    except LoraplanError as exc:
        return None, f"{setup.model} (named in the config) could not be loaded: {exc}"
    return arch, f"{arch.model_id} from the config ({arch.source})"


def check_setup(setup: TrainingSetup, fmt: str | None = None, arch: Architecture | None = None, *,
                tokens: int | None = None, examples: int | None = None, devices: int | None = None,
                calibration: Calibration | None = None, path: str = "<setup>", model_note: str = "",
                unresolved: dict[str, str] | None = None, config_class: str | None = None) -> Report:
    """Check a TrainingSetup (as read from format `fmt`) against `arch` and the data facts.

    unresolved: setup paths the file sets by an expression loraplan does not evaluate; they stay unknown
    (no trainer default is assumed for them) and are reported as not checked.
    """
    rules_fmt = "peft" if fmt == "peft-python" else fmt  # the same LoraConfig, written as Python
    ctx = CheckContext.build(setup, rules_fmt, arch, model_note=model_note, tokens=tokens, examples=examples,
                              devices=devices, calibration=calibration, unresolved=dict(unresolved or {}),
                              config_class=config_class)
    findings, skipped = run_checks(ctx)
    notes = tuple(f"not checked: `{expression}` is an expression loraplan does not evaluate, so no value or default "
                  "is assumed for it" for expression in (unresolved or {}).values())
    return Report(path, fmt or "setup", arch.model_id if arch else setup.model, model_note, tuple(findings),
                  tuple(skipped), ctx.assumed, notes)


def check_config(detected: Detected, model: str | None = None, *, tokens: int | None = None,
                 examples: int | None = None, devices: int | None = None, calibration: Calibration | None = None,
                 trust_remote_code: bool = False) -> Report:
    """Check a config read by formats.detect.read_config."""
    arch, note = resolve_model(detected.setup, model, trust_remote_code)
    return check_setup(detected.setup, detected.format, arch, tokens=tokens, examples=examples, devices=devices,
                       calibration=calibration, path=str(Path(detected.path)), model_note=note,
                       unresolved=detected.unresolved, config_class=detected.config_class)
