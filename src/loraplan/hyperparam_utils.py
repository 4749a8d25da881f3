"""Drop-in replacement for tinker-cookbook's `hyperparam_utils`: same names and signatures.

`from loraplan import hyperparam_utils` instead of `from tinker_cookbook import hyperparam_utils`
works for any model loraplan can read (catalogue, local folder, config.json, hub), with counts
computed from the architecture under the tinker convention rather than read from a table.
"""

from __future__ import annotations

import os
from functools import lru_cache

from loraplan.arch.conventions import Component, Convention, budget
from loraplan.arch.model import Architecture
from loraplan.arch.sources import load_architecture
from loraplan.errors import LoraplanError
from loraplan.rules import lr as lr_rules
from loraplan.rules.calibration import (
    ENV_VAR,
    ModelTraits,
    published_calibration,
    resolve_calibration,
)


@lru_cache(maxsize=64)
def _arch(model_name: str) -> Architecture:
    return load_architecture(model_name)


def get_lr(model_name: str, is_lora: bool = True) -> float:
    """Recommended peak LR: 5e-5 * (10 if LoRA) * (2000/hidden)^P, P by the model's family.

    A drop-in gives tinker-cookbook's numbers, so this is the published formula (Llama and Qwen
    only) unless LORAPLAN_CALIBRATION names a calibration file; `loraplan lr` uses the fitted one.
    """
    arch = _arch(model_name)
    calibration = resolve_calibration(None) if os.environ.get(ENV_VAR) else published_calibration()
    traits = ModelTraits.of(arch)
    advice = lr_rules.recommend_lr(arch.family, arch.hidden_size, is_lora, calibration,
                                   total_params=arch.total_params, model_id=model_name, traits=traits)
    return advice.lr


def get_lora_lr_over_full_finetune_lr(model_name: str, lora_alpha: int = 32) -> float:
    """The LoRA / full fine-tuning LR ratio: 10 for every model (tinker-cookbook hyperparam_utils.py)."""
    del model_name, lora_alpha  # the ratio is flat by design
    return lr_rules.LORA_MULTIPLIER


def get_lora_param_count(
    model_name: str,
    lora_rank: int = 32,
    detailed: bool = False,
    include_experts: bool = True,
    shared_expert_outer_loras: bool = True,
    train_mlp: bool = True,
    train_attn: bool = True,
    train_unembed: bool = True,
) -> int | dict[str, int]:
    """LoRA params at `lora_rank`; `detailed` returns the per-component totals."""
    if not (train_mlp or train_attn or train_unembed):
        raise LoraplanError("at least one of train_mlp, train_attn, train_unembed must be true")
    targets = [name for name, on in (("attn", train_attn), ("mlp" if include_experts else "dense-mlp", train_mlp))
               if on]
    convention = Convention.TINKER if shared_expert_outer_loras else Convention.PER_EXPERT
    result = budget(_arch(model_name), convention, targets, unembed=train_unembed)
    if detailed:
        parts = {c.value: lora_rank * n for c, n in result.per_rank.items() if c is not Component.EXPERTS}
        parts["mlp"] = lora_rank * result.mlp_total
        return parts
    return result.params(lora_rank)


def get_full_finetune_param_count(model_name: str) -> int:
    """Total parameters of the model (exact from safetensors headers when available)."""
    return _arch(model_name).total_params


def get_full_finetune_lr_multiplier(model_name: str) -> float:
    """1 / sqrt(total params)."""
    return lr_rules.full_ft_multiplier(get_full_finetune_param_count(model_name))


def get_lora_lr_multiplier(model_name: str) -> float:
    """The full fine-tuning multiplier times the flat LoRA factor of 10."""
    return lr_rules.lora_multiplier(get_full_finetune_param_count(model_name))
