"""Architecture from a list of named weights (safetensors headers or meta-device modules).

The config still supplies the facts (hidden size, family, MoE shape); the weights supply the
names and shapes, so a layout loraplan has no builder for is still counted exactly.
"""

from __future__ import annotations

import math
import re
from typing import Any

from loraplan.arch.builders import attention_type_of
from loraplan.arch.config import family_of, get_int, text_config
from loraplan.arch.model import EXPERT_INPUT_SIDE_LEAVES, Architecture, Kind, Role, Weight
from loraplan.arch.roles import require_roles, role_of

_LAYER = re.compile(r"layers\.(\d+)\.")
_EXPERT_INDEX = re.compile(r"^(?P<prefix>.*\.experts)\.(?P<idx>\d+)\.(?P<leaf>[^.]+)$")


def layer_of(name: str) -> int | None:
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def fused_parts(leaf: str, out: int, cfg: dict[str, Any]) -> tuple[int, ...]:
    """Logical matrices inside a fused weight, from its leaf name and the config.

    Fused q/k/v (`qkv_proj`, Falcon's and GPT-NeoX's `query_key_value`, `Wqkv`) hold the query
    heads and equal numbers of key and value heads, so the key/value head count follows from the
    fused width; Gated DeltaNet inputs hold q, k (key heads) and v, z (value heads); a Mamba
    `in_proj` holds z and x (Mamba-2 then B, C and one dt per head).
    """
    if leaf in ("gate_up_proj", "w13"):
        return (out // 2, out // 2)
    if leaf in ("qkv_proj", "query_key_value", "Wqkv", "qkv"):
        return _qkv_parts(out, cfg)
    if leaf in ("in_proj_qkv", "in_proj_qkvz"):
        key_dim = _product(cfg, "linear_num_key_heads", "linear_key_head_dim")
        value_dim = _product(cfg, "linear_num_value_heads", "linear_value_head_dim")
        parts = (key_dim, key_dim, value_dim) + ((value_dim,) if leaf == "in_proj_qkvz" else ())
        return parts if key_dim and value_dim and sum(parts) == out else ()
    if leaf == "in_proj":
        return mamba_in_proj_parts(out, cfg)
    return ()


def _first_int(cfg: dict[str, Any], *keys: str) -> int:
    return next((v for k in keys if isinstance(v := cfg.get(k), int) and not isinstance(v, bool) and v > 0), 0)


def mamba_in_proj_parts(out: int, cfg: dict[str, Any]) -> tuple[int, ...]:
    """Mamba-2: (z, x, B, C, dt) = (inner, inner, groups x state, groups x state, heads); Mamba-1: (z, x)."""
    heads = _first_int(cfg, "mamba_num_heads", "mamba_n_heads")
    inner = heads * _first_int(cfg, "mamba_head_dim", "mamba_d_head")
    state = _first_int(cfg, "ssm_state_size", "mamba_d_state", "state_size")
    groups = _first_int(cfg, "n_groups", "mamba_n_groups") or 1
    mamba2 = (inner, inner, groups * state, groups * state, heads)
    if inner and state and sum(mamba2) == out:
        return mamba2
    expand = _first_int(cfg, "mamba_expand", "expand")
    hidden = _first_int(cfg, "hidden_size")
    return (out // 2, out // 2) if expand and hidden and out == 2 * expand * hidden else ()


def _product(cfg: dict[str, Any], *keys: str) -> int:
    values = [cfg.get(k) for k in keys]
    return math.prod(values) if all(isinstance(v, int) and v > 0 for v in values) else 0


def _qkv_parts(out: int, cfg: dict[str, Any]) -> tuple[int, ...]:
    heads = cfg.get("num_attention_heads") or cfg.get("n_head") or cfg.get("n_heads")
    hidden = cfg.get("hidden_size") or cfg.get("d_model")
    if not isinstance(heads, int) or not isinstance(hidden, int) or heads <= 0:
        return ()
    head_dim = cfg.get("head_dim") or hidden // heads
    if not isinstance(head_dim, int) or head_dim <= 0 or out % head_dim:
        return ()
    kv_heads, odd = divmod(out // head_dim - heads, 2)
    if odd or kv_heads <= 0:
        return ()
    return (heads * head_dim, kv_heads * head_dim, kv_heads * head_dim)


def expert_matrix(leaf: str, shape: tuple[int, int], hidden: int) -> tuple[int, int]:
    """(in, out) of one expert matrix stored 3-D as (E, a, b) in either orientation.

    transformers stores most as (E, out, in), like nn.Linear; Llama-4 and gpt-oss checkpoints as
    (E, in, out). The hidden size, on the input side of an up-projection and the output side of a
    down-projection, tells them apart; a latent MoE (Nemotron-3 Super) has neither side equal to
    hidden and uses the nn.Linear order.
    """
    a, b = shape
    hidden_side = a if leaf in EXPERT_INPUT_SIDE_LEAVES else b
    transposed = (a == hidden) != (b == hidden) and hidden_side == hidden
    return (a, b) if transposed else (b, a)


def weights_from_shapes(shapes: dict[str, tuple[int, ...]], cfg: dict[str, Any]) -> list[Weight]:
    """Named 2-D / 3-D tensors -> Weights; per-index expert tensors are grouped into stacks."""
    hidden = get_int(cfg, "hidden_size")
    weights: list[Weight] = []
    stacks: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for tensor, shape in shapes.items():
        if not tensor.endswith(".weight") and len(shape) != 3:
            continue
        name = tensor[: -len(".weight")] if tensor.endswith(".weight") else tensor
        leaf = name.rsplit(".", 1)[-1]
        if len(shape) == 2:
            expert = _EXPERT_INDEX.match(name)
            if expert:
                stacks.setdefault((expert["prefix"], expert["leaf"]), []).append(shape)
                continue
            out, inn = shape
            role = role_of(name)
            kind = Kind.EMBEDDING if role is Role.EMBED else Kind.LINEAR
            parts = fused_parts(leaf, out, cfg)
            weights.append(Weight(name, inn, out, role, layer_of(name), parts=parts, kind=kind))
        elif len(shape) == 3 and ".experts." in f"{name}.":
            inn, out = expert_matrix(leaf, (shape[1], shape[2]), hidden)
            parts = fused_parts(leaf, out, cfg) if leaf in ("gate_up_proj", "w13") else ()
            weights.append(Weight(name, inn, out, Role.EXPERT, layer_of(name), shape[0], parts,
                                  Kind.EXPERT_PARAM))
    for (prefix, leaf), members in stacks.items():
        out, inn = members[0]
        weights.append(Weight(f"{prefix}.{leaf}", inn, out, Role.EXPERT, layer_of(prefix), len(members)))
    return weights


def architecture_from_weights(
    config: dict[str, Any],
    weights: list[Weight],
    total_params: int,
    model_id: str,
    source: str,
) -> Architecture:
    """Combine read weights with config facts; every language-model linear weight must have a role."""
    require_roles(weights, model_id)
    cfg = text_config(config)
    experts = get_int(cfg, "num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts", default=0)
    top_k = get_int(cfg, "num_experts_per_tok", "experts_per_token", "moe_k", default=0)
    expert_params = sum(w.numel for w in weights if w.role is Role.EXPERT)
    active = total_params - (expert_params * (experts - top_k) // experts if experts else 0)
    unembed = [w for w in weights if w.role is Role.UNEMBED]
    vocab = unembed[0].out_features if unembed else get_int(cfg, "vocab_size", default=0)
    return Architecture(
        model_id=model_id,
        model_type=str(config.get("model_type", cfg.get("model_type", "unknown"))),
        family=family_of(config),
        hidden_size=get_int(cfg, "hidden_size", "d_model", "n_embd", default=_embedding_width(weights)),
        num_layers=get_int(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers",
                           default=1 + max((w.layer for w in weights if w.layer is not None), default=-1)),
        vocab_size=vocab,
        weights=tuple(weights),
        total_params=total_params,
        active_params=active,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        num_experts=experts,
        experts_per_token=top_k,
        attention_type=attention_type_of(cfg),
        architectures=tuple(config.get("architectures") or ()),
        source=source,
    )


def _embedding_width(weights: list[Weight]) -> int:
    """Hidden size read off the token embedding, for configs that name it otherwise (MPT's d_model)."""
    return next((w.out_features for w in weights if w.role is Role.EMBED), 0)


def total_from_shapes(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes.values())
