"""Reading the facts out of a config.json dict: text_config nesting, family, MoE shape."""

from __future__ import annotations

from typing import Any

from loraplan.errors import ConfigError

# model_type (of the text model) -> LR family. Families are what the LR rules are calibrated on.
FAMILY_BY_MODEL_TYPE: dict[str, str] = {
    "llama": "llama",
    "llama4_text": "llama",
    "qwen2": "qwen",
    "qwen2_moe": "qwen",
    "qwen3": "qwen",
    "qwen3_moe": "qwen",
    "qwen3_next": "qwen",
    "qwen3_vl_text": "qwen",
    "qwen3_vl_moe_text": "qwen",
    "qwen3_5_text": "qwen",
    "qwen3_5_moe_text": "qwen",
    "mistral": "mistral",
    "mixtral": "mistral",
    "ministral": "mistral",
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3_text": "gemma",
    "phi3": "phi",
    "deepseek_v3": "deepseek",
    "deepseek_v2": "deepseek",
    "kimi_k2": "kimi",
    "kimi_k25": "kimi",
    "gpt_oss": "gpt-oss",
    "nemotron": "nemotron",
    "nemotron_h": "nemotron",
    "glm4_moe": "glm",
    "glm4": "glm",
}


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's config: `text_config` for VL / Qwen3.5 configs, else the config."""
    inner = config.get("text_config")
    if isinstance(inner, dict) and "hidden_size" in inner:
        merged = dict(inner)
        if "tie_word_embeddings" in config:
            merged.setdefault("tie_word_embeddings", config["tie_word_embeddings"])
        return merged
    return config


def family_of(config: dict[str, Any]) -> str:
    """LR family from model_type (outer model_type first: kimi_k2 wraps a DeepSeek-V3 body)."""
    for model_type in (config.get("model_type"), text_config(config).get("model_type")):
        if isinstance(model_type, str) and model_type in FAMILY_BY_MODEL_TYPE:
            return FAMILY_BY_MODEL_TYPE[model_type]
    for arch in config.get("architectures") or []:
        low = str(arch).lower()
        for key, fam in (("llama", "llama"), ("qwen", "qwen"), ("mistral", "mistral"), ("gemma", "gemma")):
            if low.startswith(key):
                return fam
    model_type = config.get("model_type")
    return str(model_type) if model_type else "unknown"


def get_int(cfg: dict[str, Any], *keys: str, default: int | None = None, where: str = "config") -> int:
    """First present integer field among keys, with a message naming the field when absent."""
    for key in keys:
        value = cfg.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}: field `{key}` should be an integer, got {value!r}")
            return value
    if default is not None:
        return default
    raise ConfigError(f"{where}: missing field `{keys[0]}`")


def head_dim_of(cfg: dict[str, Any]) -> int:
    """Per-head width: `head_dim` when the config gives it, else hidden_size / num_attention_heads."""
    hidden = get_int(cfg, "hidden_size")
    heads = get_int(cfg, "num_attention_heads")
    return get_int(cfg, "head_dim", default=hidden // heads)


def mamba_dims(cfg: dict[str, Any]) -> tuple[int, int, int]:
    """(inner width, dt rank, state size) of a Jamba Mamba mixer; dt rank `auto` is ceil(hidden / 16)."""
    hidden = get_int(cfg, "hidden_size")
    dt_rank = cfg.get("mamba_dt_rank", "auto")
    dt_rank = -(-hidden // 16) if dt_rank == "auto" else get_int(cfg, "mamba_dt_rank")
    return get_int(cfg, "mamba_expand", default=2) * hidden, dt_rank, get_int(cfg, "mamba_d_state", default=16)
