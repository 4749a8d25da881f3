"""Everything a check may look at, built once: the setup as the trainer runs it, the model, the data.

Checks are small pure functions of a CheckContext. The context holds the setup with the trainer's
defaults filled in (and which values came from defaults, so evidence can say so), the model's
Architecture when one could be loaded, the trained-token count when one was given, and the
adaptation (which weights the trainer really adapts), computed once here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loraplan.arch.model import Architecture
from loraplan.doctor.defaults import with_defaults
from loraplan.doctor.findings import Assumed
from loraplan.doctor.keys import key_for
from loraplan.doctor.targets import Adaptation, adaptation
from loraplan.rules.calibration import Calibration
from loraplan.setup import Method, TrainingSetup


@dataclass(frozen=True)
class CheckContext:
    """The inputs of every check.

    setup: as the trainer will run it (trainer defaults filled in); `stated` is the file as read.
    format: the trainer format name, or None for a setup that came from no file.
    arch: the model, when it could be loaded; `model_note` says where it came from or why not.
    tokens / examples: trained tokens and examples, from --tokens/--examples or a --data count.
    devices: data-parallel devices (no trainer config states it); None means unknown, counted as 1.
    """

    setup: TrainingSetup
    stated: TrainingSetup
    format: str | None = None
    arch: Architecture | None = None
    model_note: str = ""
    tokens: int | None = None
    examples: int | None = None
    devices: int | None = None
    calibration: Calibration | None = None
    assumed: tuple[Assumed, ...] = ()
    adapted: Adaptation | None = field(default=None)
    unresolved: dict[str, str] = field(default_factory=dict)  # path -> `key = expression` the reader left unknown

    @classmethod
    def build(cls, stated: TrainingSetup, fmt: str | None = None, arch: Architecture | None = None,
              config_class: str | None = None, **kwargs: Any) -> CheckContext:
        unresolved = kwargs.get("unresolved") or {}
        setup, assumed = with_defaults(stated, fmt, arch, lambda p: key_for(fmt, p), skip=frozenset(unresolved),
                                       config_class=config_class)
        adapted = adaptation(setup.lora, fmt, arch) if arch is not None and setup.is_lora else None
        return cls(setup=setup, stated=stated, format=fmt, arch=arch, assumed=assumed, adapted=adapted, **kwargs)

    @property
    def method(self) -> Method:
        return self.setup.method or Method.SFT

    def key(self, path: str) -> str:
        return key_for(self.format, path)

    def assumed_source(self, path: str) -> str | None:
        return next((a.source for a in self.assumed if a.path == path), None)

    def seen(self, path: str, value: Any = None, shown: str | None = None) -> str:
        """`key = value` as the config states it, or `key not set (trainer default value)`."""
        if value is None:
            section, _, name = path.partition(".")
            value = getattr(getattr(self.setup, section), name) if name else getattr(self.setup, section)
        text = shown if shown is not None else show(value)
        source = self.assumed_source(path)
        if source is not None:
            return f"{self.key(path)} not set, so the default {text} applies ({source})"
        return f"{self.key(path)} = {text}"

    @property
    def batch(self) -> int | None:
        """Effective batch: micro x accumulation x devices (devices 1 when unknown)."""
        optim = self.setup.optim
        if optim.batch_size is not None:
            return optim.batch_size
        if optim.micro_batch_size is None:
            return None
        devices = self.devices or optim.num_devices or 1
        return optim.micro_batch_size * (optim.gradient_accumulation_steps or 1) * devices


def show(value: Any) -> str:
    """A value the way a config file would show it (small LRs as 4.73e-4)."""
    if isinstance(value, float):
        return number(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if hasattr(value, "value"):
        return str(value.value)
    return str(value)


def number(value: float) -> str:
    """2e-05 -> 2e-5, 0.000473 -> 4.73e-4, 0.05 -> 0.05, 32.0 -> 32."""
    if value and abs(value) < 1e-3:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}"
