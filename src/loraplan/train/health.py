"""LoraHealthCallback: is the adapter's update growing sanely? A transformers TrainerCallback for any Trainer.

The doctrine's check is `torch.linalg.norm(lora_B @ lora_A)` over training: unbounded growth means the
scale (alpha/r) or the LR is too high; a norm that barely moves means they are too low. Materialising
B @ A (out x in) for every layer every step costs as much as the layer itself, so this callback:

- samples at most `layers` adapted modules, evenly spaced through the network;
- every `every` steps computes ||s B A||_F through the r x r Gram matrices,
  ||B A||_F^2 = sum((A A^T) * (B^T B)), which costs r^2 (in + out) instead of r * in * out;
- reports that norm (s = alpha/r, or alpha/sqrt(r) under rsLoRA, as PEFT stores it), its ratio to the
  base weight's norm ||W||_F (computed once), and its growth since the previous check.

Metrics go through the Trainer's own logging (keys `lora/update_norm`, `lora/update_ratio`,
`lora/update_ratio_max`, `lora/growth`), so W&B / TensorBoard receive them when the callback runs before the
reporting callbacks: add it with `LoraHealthCallback.install(trainer)`, or pass it in `callbacks=[...]`
(then it still lands in `trainer.state.log_history` and in every callback listed after it).
It warns once, with the fix, when the update explodes or stays flat.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger("loraplan.train.health")

# Thresholds on ||s B A||_F / ||W||_F (the relative size of the learned update), each with its reason.
# The update is three times the size of the weight it adapts: the base weight no longer dominates the layer.
# (1x would flag healthy fits of randomly initialised test models, whose weights are small; 3x never is healthy.)
EXPLODE_RATIO = 3.0
EXPLODE_GROWTH = 3.0  # the update norm tripled between consecutive checks for `EXPLODE_STREAK` checks running
EXPLODE_STREAK = 3
FLAT_RATIO = 1e-5  # after `FLAT_AFTER` checks the update is still below 1e-5 of the weight: the LR does nothing
FLAT_AFTER = 3


@dataclass
class _Tracked:
    name: str
    module: Any
    weight_norm: float


class LoraHealthCallback(TrainerCallback):
    """Adapter-norm monitor for PEFT LoRA models under any transformers Trainer (TRL's included).

    every: steps between checks; layers: adapted modules sampled (evenly spaced); warn: log a warning
    (once per kind) on explosion or a flat adapter. After training, `summary()` gives the history and the status.
    """

    def __init__(self, every: int = 10, layers: int = 8, warn: bool = True) -> None:
        if every < 1 or layers < 1:
            raise ValueError("every and layers must be >= 1")
        self.every = every
        self.layers = layers
        self.warn = warn
        self.tracked: list[_Tracked] = []
        self.history: list[dict[str, float]] = []
        self.warnings: list[str] = []
        self.status = "healthy"
        self._pending: dict[str, float] = {}
        self._streak = 0
        self._scale: float | None = None

    @classmethod
    def install(cls, trainer: Any, **kwargs: Any) -> LoraHealthCallback:
        """Add a callback to `trainer` ahead of the reporting callbacks (W&B, TensorBoard see its metrics)."""
        callback = cls(**kwargs)
        trainer.callback_handler.callbacks.insert(0, callback)
        return callback

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.tracked = _sample(model, self.layers) if model is not None else []
        if self.tracked:
            self._scale = _scale(self.tracked[0].module)
        self._measure(0)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.tracked and state.global_step % self.every == 0:
            self._measure(state.global_step)
            control.should_log = True
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not self._pending:
            return
        if logs is not None:
            logs.update(self._pending)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(self._pending)
        self._pending = {}

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.tracked and (not self.history or self.history[-1]["step"] != state.global_step):
            self._measure(state.global_step)

    def _measure(self, step: int) -> None:
        if not self.tracked:
            return
        norms = [update_norm(t.module) for t in self.tracked]
        ratios = [n / t.weight_norm if t.weight_norm > 0 else math.inf for n, t in zip(norms, self.tracked,
                                                                                        strict=True)]
        norm = sum(norms) / len(norms)
        previous = self.history[-1]["update_norm"] if self.history else 0.0
        growth = norm / previous if previous > 0 else math.nan
        point = {"step": float(step), "update_norm": norm, "update_ratio": sum(ratios) / len(ratios),
                 "update_ratio_max": max(ratios), "growth": growth}
        self.history.append(point)
        if step > 0:
            self._pending = {f"lora/{k}": v for k, v in point.items() if k != "step" and math.isfinite(v)}
        self._judge(point)

    def _judge(self, point: dict[str, float]) -> None:
        ratio_max, growth = point["update_ratio_max"], point["growth"]
        self._streak = self._streak + 1 if math.isfinite(growth) and growth >= EXPLODE_GROWTH else 0
        checks = len(self.history) - 1  # the step-0 reading is the starting point
        scale = f" (scale alpha/r = {self._scale:g})" if self._scale is not None else ""
        if not math.isfinite(ratio_max) or ratio_max > EXPLODE_RATIO or self._streak >= EXPLODE_STREAK:
            why = (f"the update norm ||s·BA|| reached {ratio_max:.3g}x the base weight's norm"
                   if math.isfinite(ratio_max) else "the update norm is not finite")
            if self._streak >= EXPLODE_STREAK:
                why = f"the update norm grew {growth:.1f}x per check for {self._streak} checks"
            self._flag("exploding", f"LoRA adapter norm is exploding: {why}{scale}. Fix: lower alpha (keep it fixed, "
                       "e.g. 32, so alpha/r stays <= 4) or lower the learning rate (alpha/r >= 4 with LR > 3e-4 "
                       "diverges)")
        elif checks >= FLAT_AFTER and ratio_max < FLAT_RATIO and self.status != "exploding":
            self._flag("flat", f"LoRA adapter barely moves: after {int(point['step'])} steps ||s·BA|| is "
                       f"{ratio_max:.2g} of the base weight's norm{scale}. Fix: raise the learning rate (LoRA "
                       "wants about 10x the full fine-tuning LR) or check that alpha is not tiny")

    def _flag(self, status: str, message: str) -> None:
        if status == "exploding" or self.status == "healthy":
            self.status = status
        if any(w.startswith(message[:30]) for w in self.warnings):
            return
        self.warnings.append(message)
        if self.warn:
            logger.warning(message)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: status (healthy | exploding | flat | not-applicable), warnings, sampled layers, history."""
        if not self.tracked:
            return {"status": "not-applicable", "warnings": [], "layers": [], "history": []}
        last = self.history[-1] if self.history else {}
        return {"status": self.status, "warnings": list(self.warnings), "scale": self._scale,
                "layers": [t.name for t in self.tracked], "update_ratio": last.get("update_ratio"),
                "update_ratio_max": max((h["update_ratio_max"] for h in self.history), default=None),
                "history": [{k: (v if math.isfinite(v) else None) for k, v in h.items()} for h in self.history]}


def _sample(model: Any, limit: int) -> list[_Tracked]:
    """Up to `limit` LoRA-adapted modules, evenly spaced in module order."""
    found = [(name, m) for name, m in model.named_modules()
             if hasattr(m, "lora_A") and hasattr(m, "lora_B") and hasattr(m, "get_base_layer")
             and _active(m) in m.lora_A]
    if not found:
        return []
    step = max(1, len(found) / limit)
    picked = [found[int(i * step)] for i in range(min(limit, len(found)))]
    out = []
    for name, module in picked:
        weight = module.get_base_layer().weight
        out.append(_Tracked(name, module, float(weight.detach().float().norm())))
    return out


def _active(module: Any) -> str:
    adapters = module.active_adapters if hasattr(module, "active_adapters") else ["default"]
    return adapters[0] if adapters else "default"


def _scale(module: Any) -> float:
    return float(module.scaling[_active(module)])


def update_norm(module: Any) -> float:
    """||s B A||_F of one PEFT LoRA module via r x r Grams: sum((A A^T) * (B^T B)) = ||B A||_F^2."""
    import torch

    name = _active(module)
    with torch.no_grad():
        a = module.lora_A[name].weight.detach().float()  # r x in
        b = module.lora_B[name].weight.detach().float()  # out x r
        squared = torch.sum((a @ a.T) * (b.T @ b)).clamp_min(0.0)
        return float(module.scaling[name] * torch.sqrt(squared))
