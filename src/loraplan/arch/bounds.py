"""Sane bounds on a model config, checked once before any layout is built.

A config.json comes from anywhere. The builders loop over layers and multiply sizes, and the meta
path hands the dict to transformers, so a hostile value costs a hang (`num_hidden_layers: 10**12`),
a crash (`num_attention_heads: 0`, `decoder_sparse_step: 0`, `model_type: [...]`) or a nonsense
answer (`hidden_size: -4096` gives a complex learning rate). Every size field is checked here for
type (a whole number, not a bool or float) and range; the bounds sit 10-100x above the largest
published models (Llama-3.1-405B: 126 layers, hidden 16,384; Kimi-K2: 384 experts; Gemma 3:
vocabulary 262,144), so a real config never meets them. Raise one with the environment variable
LORAPLAN_CONFIG_LIMITS, e.g. `LORAPLAN_CONFIG_LIMITS="layers=4096,vocab=33554432"`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from loraplan.errors import ConfigError

ENV_VAR = "LORAPLAN_CONFIG_LIMITS"

# limit name -> (smallest allowed, largest allowed by default)
LIMITS: dict[str, tuple[int, int]] = {
    "layers": (1, 1024),
    "hidden": (1, 1 << 20),
    "heads": (1, 1 << 16),
    "head_dim": (1, 1 << 16),
    "intermediate": (1, 1 << 22),
    "vocab": (1, 1 << 24),
    "experts": (0, 1 << 16),
    "expert_layers": (0, 1 << 20),  # layers x experts: modules the meta path instantiates
    "rank": (0, 1 << 16),  # MLA / linear-attention inner sizes, where 0 can mean "absent"
    "step": (1, 1024),  # decoder_sparse_step, moe_layer_freq
    "index": (0, 1024),  # first_k_dense_replace
}

# config field -> limit name. Aliases are the spellings transformers config classes use.
FIELDS: dict[str, str] = {
    **dict.fromkeys(("num_hidden_layers", "n_layer", "n_layers", "num_layers", "depth"), "layers"),
    **dict.fromkeys(("hidden_size", "n_embd", "d_model"), "hidden"),
    **dict.fromkeys(("num_attention_heads", "n_head", "num_heads", "num_key_value_heads"), "heads"),
    "head_dim": "head_dim",
    **dict.fromkeys(("intermediate_size", "moe_intermediate_size", "n_inner", "ffn_dim"), "intermediate"),
    "vocab_size": "vocab",
    **dict.fromkeys(("num_experts", "n_routed_experts", "num_local_experts", "n_shared_experts",
                     "num_experts_per_tok", "experts_per_token"), "experts"),
    **dict.fromkeys(("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                     "linear_num_key_heads", "linear_key_head_dim", "linear_num_value_heads",
                     "linear_value_head_dim", "linear_conv_kernel_dim", "shared_expert_intermediate_size"), "rank"),
    **dict.fromkeys(("decoder_sparse_step", "moe_layer_freq"), "step"),
    "first_k_dense_replace": "index",
}
# Optional fields where 0 or null means "none" (a dense model, no shared expert, no q compression).
_ZERO_ALLOWED = frozenset({"num_experts", "n_routed_experts", "num_local_experts", "n_shared_experts",
                           "num_experts_per_tok", "experts_per_token"})
_EXPERT_COUNTS = ("num_experts", "n_routed_experts", "num_local_experts")
_TOP_K = ("num_experts_per_tok", "experts_per_token")
_NESTING = 4  # text_config, vision_config, ... nest one or two levels in real configs


def limits() -> dict[str, tuple[int, int]]:
    """The bounds in force: LIMITS with the maxima LORAPLAN_CONFIG_LIMITS raises (or lowers)."""
    chosen = dict(LIMITS)
    spec = os.environ.get(ENV_VAR, "").strip()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in chosen or not value.strip().isdigit():
            raise ConfigError(f"{ENV_VAR}: `{item}` should be NAME=INTEGER with NAME one of {', '.join(chosen)}")
        chosen[name] = (chosen[name][0], int(value))
    return chosen


def _first(cfg: dict[str, Any], keys: tuple[str, ...]) -> int:
    return next((v for k in keys if isinstance(v := cfg.get(k), int) and v), 0)


def _problems(cfg: dict[str, Any], where: str, bounds: dict[str, tuple[int, int]], depth: int) -> Iterator[str]:
    """Every out-of-bounds field of one config dict and the configs nested in it."""
    for key in ("model_type",):
        if key in cfg and cfg[key] is not None and not isinstance(cfg[key], str):
            yield f"{where}`{key}` should be a string, got {type(cfg[key]).__name__}"
    for key in ("architectures", "layer_types"):
        value = cfg.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            yield f"{where}`{key}` should be a list of strings"
    only = cfg.get("mlp_only_layers")
    if only is not None and not (isinstance(only, list) and all(type(v) is int for v in only)):
        yield f"{where}`mlp_only_layers` should be a list of layer numbers, got {only!r:.40}"
    for key, limit in FIELDS.items():
        value = cfg.get(key)
        if value is None:
            continue
        low, high = bounds[limit]
        if key in _ZERO_ALLOWED:
            low = 0
        if type(value) is not int:
            yield f"{where}`{key}` should be an integer, got {value!r:.40}"
        elif not low <= value <= high:
            raise_hint = f" (raise with {ENV_VAR}={limit}=N)" if value > high else ""
            yield f"{where}`{key}` = {value:,} is outside {low:,}..{high:,}{raise_hint}"
    experts, top_k = _first(cfg, _EXPERT_COUNTS), _first(cfg, _TOP_K)
    if experts and top_k > experts:
        yield f"{where}{top_k} experts per token but only {experts} experts"
    layers = cfg.get("num_hidden_layers")
    if type(layers) is int and experts and layers * experts > bounds["expert_layers"][1]:
        yield (f"{where}{layers:,} layers x {experts:,} experts is more than {bounds['expert_layers'][1]:,} "
               f"(raise with {ENV_VAR}=expert_layers=N)")
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    if (cfg.get("head_dim") is None and type(hidden) is int and type(heads) is int and heads > 0
            and hidden > 0 and hidden % heads):
        yield f"{where}`hidden_size` {hidden:,} is not a multiple of `num_attention_heads` {heads:,} (no head_dim)"
    if depth >= _NESTING:
        return
    for key, value in cfg.items():
        if isinstance(value, dict) and key.endswith("_config"):
            yield from _problems(value, f"{where}{key}.", bounds, depth + 1)


def check_config_bounds(config: dict[str, Any], where: str) -> None:
    """Refuse a config with any size field of the wrong type or out of bounds; every problem named at once."""
    problems = list(_problems(config, "", limits(), 0))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ConfigError(f"{where}: {shown}")
