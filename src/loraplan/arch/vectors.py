"""Norm weights and biases of a built architecture: small, but part of an exact total.

A builder yields the weight matrices; the vectors around them (norms, biases, per-head
parameters of linear attention) follow from the same config and are counted here, per family.
"""

from __future__ import annotations

from typing import Any

from loraplan.arch.config import get_int, head_dim_of, mamba_dims
from loraplan.arch.layouts import LAYOUTS, MLA_TYPES, Layout, QkNorm
from loraplan.arch.model import Role, Weight

Config = dict[str, Any]

# Non-matrix parameters per layer (norms) for the total count; biases are added where configs say.
_NORMS_PER_LAYER = 2


def _has_qkv_bias(cfg: Config) -> bool:
    """Biases on q, k, v: `attention_bias`, Qwen2 always, Qwen2-MoE by `qkv_bias` (its config class defaults True)."""
    model_type = cfg["model_type"]
    if model_type == "qwen2":
        return True
    if model_type == "qwen2_moe":
        return bool(cfg.get("qkv_bias", True))
    return bool(cfg.get("attention_bias"))


def _layout_vectors(cfg: Config, layout: Layout, weights: list[Weight]) -> int:
    """Norm weights and biases of a Layout family (see layouts.py)."""
    hidden = get_int(cfg, "hidden_size")
    layers = get_int(cfg, "num_hidden_layers")
    per_norm = hidden * (2 if layout.norm_bias else 1)
    total = per_norm * (layout.norms_per_layer * layers + 1)
    attn = [w for w in weights if w.role is Role.ATTN]
    if layout.qk_norm_flag(cfg) and layout.qk_norm is QkNorm.PER_HEAD:
        total += 2 * head_dim_of(cfg) * sum(1 for w in attn if w.leaf == "q_proj")
    elif layout.qk_norm_flag(cfg) and layout.qk_norm is QkNorm.FULL:
        total += sum(w.out_features for w in attn if w.leaf in ("q_proj", "k_proj"))
    if layout.qkv_bias(cfg):
        total += sum(w.out_features for w in attn if w.leaf in ("q_proj", "k_proj", "v_proj", layout.fused_qkv))
    if layout.o_bias(cfg):
        total += sum(w.out_features for w in attn if w.leaf == layout.o_name)
    if layout.mlp_bias(cfg):
        total += sum(w.out_features for w in weights if w.role in (Role.MLP, Role.SHARED_EXPERT))
    if layout.lm_head_bias(cfg):
        total += get_int(cfg, "vocab_size")
    mamba_layers = sum(1 for w in weights if w.leaf == "x_proj" and w.role is Role.MIXER)
    if mamba_layers:
        total += mamba_layers * _mamba_vectors(cfg)
    if layout.router_bias:
        total += sum(w.out_features for w in weights if w.role is Role.ROUTER)
    return total


def _mamba_vectors(cfg: Config) -> int:
    """One Jamba Mamba mixer: A_log, D, conv1d (+ bias), dt_proj bias, dt/B/C norms, optional proj biases."""
    inner, dt_rank, state = mamba_dims(cfg)
    total = inner * state + inner + inner * get_int(cfg, "mamba_d_conv", default=4) + inner
    total += inner if cfg.get("mamba_conv_bias", True) else 0
    total += dt_rank + 2 * state
    if cfg.get("mamba_proj_bias", False):
        total += 2 * inner + get_int(cfg, "hidden_size")
    return total


def vector_params(cfg: Config, weights: list[Weight]) -> int:
    """Norm weights and biases: small, but part of an exact total."""
    if cfg["model_type"] in LAYOUTS:
        return _layout_vectors(cfg, LAYOUTS[cfg["model_type"]], weights)
    hidden = get_int(cfg, "hidden_size")
    layers = get_int(cfg, "num_hidden_layers")
    total = hidden * (_NORMS_PER_LAYER * layers + 1)
    model_type = cfg["model_type"]
    if model_type in ("gemma2", "gemma3_text"):
        total += 2 * hidden * layers  # pre/post feed-forward norms
    if model_type in ("qwen3", "qwen3_moe", "gemma3_text", "qwen3_vl_text", "qwen3_vl_moe_text", "qwen3_next") or (
        model_type.startswith("qwen3_5")
    ):
        heads_norm = 2 * head_dim_of(cfg)
        full = [w for w in weights if w.leaf == "q_proj"]
        total += heads_norm * len(full)
    if _has_qkv_bias(cfg):
        total += sum(w.out_features for w in weights if w.role is Role.ATTN and w.leaf != "o_proj")
        if model_type == "gpt_oss":
            total += sum(w.out_features for w in weights if w.leaf == "o_proj")
    if model_type == "gpt_oss":
        heads = get_int(cfg, "num_attention_heads")
        total += layers * heads  # attention sinks
        total += sum(w.out_features * w.num_experts for w in weights if w.role is Role.EXPERT)
        total += sum(w.out_features for w in weights if w.role is Role.ROUTER)
    if model_type in MLA_TYPES:
        q_rank = cfg.get("q_lora_rank") or 0
        total += layers * (q_rank + get_int(cfg, "kv_lora_rank"))  # q_a / kv_a layernorms
    if model_type.startswith("qwen3_5") or model_type == "qwen3_next":  # dt_bias, A_log, conv1d, norm
        v_heads = get_int(cfg, "linear_num_value_heads", default=0)
        linear_layers = sum(1 for w in weights if w.leaf in ("in_proj_qkv", "in_proj_qkvz"))
        conv_dim = 2 * get_int(cfg, "linear_num_key_heads", default=0) * get_int(
            cfg, "linear_key_head_dim", default=0
        ) + v_heads * get_int(cfg, "linear_value_head_dim", default=0)
        kernel = get_int(cfg, "linear_conv_kernel_dim", default=0)
        total += linear_layers * (2 * v_heads + conv_dim * kernel + get_int(cfg, "linear_value_head_dim", default=0))
    return total


