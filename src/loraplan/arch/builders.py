"""config.json -> Architecture for the families loraplan knows, without torch.

Each builder mirrors the module layout of transformers (v5: MoE experts are stacked 3-D
parameters `experts.gate_up_proj` / `experts.down_proj`, routers are custom modules), so the
names it gives are the names a `target_modules` list must use. tests/test_arch_meta.py checks
every builder against transformers itself on the meta device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from loraplan.arch.config import family_of, get_int, head_dim_of, mamba_dims, text_config
from loraplan.arch.layouts import LAYOUTS, MLA_TYPES, Layout, Mlp
from loraplan.arch.model import Architecture, Kind, Role, Weight
from loraplan.arch.vectors import vector_params
from loraplan.errors import UnsupportedModelError

Config = dict[str, Any]


def _attention(cfg: Config, prefix: str, layer: int, gated_q: bool = False, o_name: str = "o_proj") -> Iterator[Weight]:
    """q, k, v, o projections (GQA/MHA); `gated_q` doubles q for an output gate (Qwen3.5)."""
    hidden = get_int(cfg, "hidden_size")
    heads = get_int(cfg, "num_attention_heads")
    kv_heads = get_int(cfg, "num_key_value_heads", default=heads)
    hd = head_dim_of(cfg)
    q_out = heads * hd * (2 if gated_q else 1)
    yield Weight(f"{prefix}.q_proj", hidden, q_out, Role.ATTN, layer)
    yield Weight(f"{prefix}.k_proj", hidden, kv_heads * hd, Role.ATTN, layer)
    yield Weight(f"{prefix}.v_proj", hidden, kv_heads * hd, Role.ATTN, layer)
    yield Weight(f"{prefix}.{o_name}", heads * hd, hidden, Role.ATTN, layer)


def _fused_qkv_attention(cfg: Config, prefix: str, layer: int, leaf: str = "qkv_proj",
                         o_name: str = "o_proj") -> Iterator[Weight]:
    """One weight holding q, k and v (Phi-3 `qkv_proj`, GPT-NeoX and Falcon `query_key_value`), then the output."""
    hidden = get_int(cfg, "hidden_size")
    heads = get_int(cfg, "num_attention_heads")
    kv_heads = get_int(cfg, "num_key_value_heads", default=heads)
    if cfg["model_type"] == "falcon":  # Falcon-7B style: one shared k/v head unless multi_query is off
        kv_heads = 1 if cfg.get("multi_query", True) else heads
    hd = head_dim_of(cfg)
    parts = (heads * hd, kv_heads * hd, kv_heads * hd)
    yield Weight(f"{prefix}.{leaf}", hidden, sum(parts), Role.ATTN, layer, parts=parts)
    yield Weight(f"{prefix}.{o_name}", heads * hd, hidden, Role.ATTN, layer)


def _mla_attention(cfg: Config, prefix: str, layer: int) -> Iterator[Weight]:
    """DeepSeek-V3 multi-head latent attention: low-rank q and kv with up-projections."""
    hidden = get_int(cfg, "hidden_size")
    heads = get_int(cfg, "num_attention_heads")
    nope = get_int(cfg, "qk_nope_head_dim")
    rope = get_int(cfg, "qk_rope_head_dim")
    v_dim = get_int(cfg, "v_head_dim")
    kv_rank = get_int(cfg, "kv_lora_rank")
    q_rank = cfg.get("q_lora_rank")
    if q_rank:
        yield Weight(f"{prefix}.q_a_proj", hidden, q_rank, Role.ATTN, layer)
        yield Weight(f"{prefix}.q_b_proj", q_rank, heads * (nope + rope), Role.ATTN, layer)
    else:
        yield Weight(f"{prefix}.q_proj", hidden, heads * (nope + rope), Role.ATTN, layer)
    yield Weight(f"{prefix}.kv_a_proj_with_mqa", hidden, kv_rank + rope, Role.ATTN, layer)
    yield Weight(f"{prefix}.kv_b_proj", kv_rank, heads * (nope + v_dim), Role.ATTN, layer)
    yield Weight(f"{prefix}.o_proj", heads * v_dim, hidden, Role.ATTN, layer)


def _linear_attention(cfg: Config, prefix: str, layer: int) -> Iterator[Weight]:
    """Gated DeltaNet: Qwen3.5 splits the input projections, Qwen3-Next fuses them (qkvz, ba)."""
    hidden = get_int(cfg, "hidden_size")
    key_dim = get_int(cfg, "linear_num_key_heads") * get_int(cfg, "linear_key_head_dim")
    v_heads = get_int(cfg, "linear_num_value_heads")
    value_dim = v_heads * get_int(cfg, "linear_value_head_dim")
    if cfg["model_type"] == "qwen3_next":
        parts = (key_dim, key_dim, value_dim, value_dim)
        yield Weight(f"{prefix}.in_proj_qkvz", hidden, sum(parts), Role.ATTN, layer, parts=parts)
        yield Weight(f"{prefix}.in_proj_ba", hidden, 2 * v_heads, Role.ATTN, layer)
    else:
        yield Weight(f"{prefix}.in_proj_qkv", hidden, 2 * key_dim + value_dim, Role.ATTN, layer,
                     parts=(key_dim, key_dim, value_dim))
        yield Weight(f"{prefix}.in_proj_z", hidden, value_dim, Role.ATTN, layer)
        yield Weight(f"{prefix}.in_proj_b", hidden, v_heads, Role.ATTN, layer)
        yield Weight(f"{prefix}.in_proj_a", hidden, v_heads, Role.ATTN, layer)
    yield Weight(f"{prefix}.out_proj", value_dim, hidden, Role.ATTN, layer)


def _mamba_mixer(cfg: Config, prefix: str, layer: int) -> Iterator[Weight]:
    """Jamba's Mamba block: in_proj (x and gate), x_proj (dt, B, C), dt_proj, out_proj."""
    hidden = get_int(cfg, "hidden_size")
    inner, dt_rank, state = mamba_dims(cfg)
    yield Weight(f"{prefix}.in_proj", hidden, 2 * inner, Role.MIXER, layer, parts=(inner, inner))
    yield Weight(f"{prefix}.x_proj", inner, dt_rank + 2 * state, Role.MIXER, layer)
    yield Weight(f"{prefix}.dt_proj", dt_rank, inner, Role.MIXER, layer)
    yield Weight(f"{prefix}.out_proj", inner, hidden, Role.MIXER, layer)


def _is_jamba_attention(cfg: Config, layer: int) -> bool:
    return layer % get_int(cfg, "attn_layer_period", default=8) == get_int(cfg, "attn_layer_offset", default=4)


def is_linear_attention_layer(cfg: Config, layer: int) -> bool:
    """From `layer_types`, else Qwen3-Next's `full_attention_interval` (every n-th layer is full attention)."""
    kinds = cfg.get("layer_types")
    if isinstance(kinds, list) and kinds:
        return layer < len(kinds) and kinds[layer] == "linear_attention"
    interval = cfg.get("full_attention_interval")
    return isinstance(interval, int) and interval > 0 and (layer + 1) % interval != 0


def _gated_mlp(hidden: int, inter: int, prefix: str, layer: int, role: Role = Role.MLP) -> Iterator[Weight]:
    yield Weight(f"{prefix}.gate_proj", hidden, inter, role, layer)
    yield Weight(f"{prefix}.up_proj", hidden, inter, role, layer)
    yield Weight(f"{prefix}.down_proj", inter, hidden, role, layer)


def _fused_mlp(hidden: int, inter: int, prefix: str, layer: int) -> Iterator[Weight]:
    """Phi-3 style: `gate_up_proj` holds gate and up."""
    yield Weight(f"{prefix}.gate_up_proj", hidden, 2 * inter, Role.MLP, layer, parts=(inter, inter))
    yield Weight(f"{prefix}.down_proj", inter, hidden, Role.MLP, layer)


def _experts(hidden: int, inter: int, experts: int, prefix: str, layer: int) -> Iterator[Weight]:
    """Stacked experts as transformers v5 holds them: fused gate_up and down, 3-D parameters."""
    yield Weight(
        f"{prefix}.gate_up_proj", hidden, 2 * inter, Role.EXPERT, layer,
        num_experts=experts, parts=(inter, inter), kind=Kind.EXPERT_PARAM,
    )
    yield Weight(f"{prefix}.down_proj", inter, hidden, Role.EXPERT, layer, num_experts=experts,
                 kind=Kind.EXPERT_PARAM)


def _router(hidden: int, experts: int, name: str, layer: int, linear: bool = False) -> Weight:
    return Weight(name, hidden, experts, Role.ROUTER, layer, kind=Kind.LINEAR if linear else Kind.ROUTER_PARAM)


def _is_moe_layer(cfg: Config, layer: int) -> bool:
    """Qwen-MoE / DeepSeek rules for which layers are sparse."""
    if isinstance(cfg.get("moe_layers"), list):  # Llama-4 lists them
        return layer in cfg["moe_layers"]
    if cfg.get("model_type") == "jamba":
        period = get_int(cfg, "expert_layer_period", default=2)
        return layer % period == get_int(cfg, "expert_layer_offset", default=1)
    if cfg.get("model_type") == "llama4_text":
        step = get_int(cfg, "interleave_moe_layer_step", default=1)
        return (layer + 1) % step == 0
    if cfg.get("model_type") == "ernie4_5_moe":
        end = get_int(cfg, "moe_layer_end_index", default=-1)
        end = get_int(cfg, "num_hidden_layers") - 1 if end == -1 else end
        return ((layer + 1) % get_int(cfg, "moe_layer_interval", default=1) == 0
                and get_int(cfg, "moe_layer_start_index", default=1) <= layer <= end)
    if cfg.get("model_type") in MLA_TYPES | {"glm4_moe"}:
        first_dense = get_int(cfg, "first_k_dense_replace", default=0)
        freq = get_int(cfg, "moe_layer_freq", default=1)
        return layer >= first_dense and layer % freq == 0
    if layer in (cfg.get("mlp_only_layers") or []):
        return False
    step = get_int(cfg, "decoder_sparse_step", default=1)
    return (layer + 1) % step == 0


def _dense_mlp(cfg: Config, layout: Layout, prefix: str, layer: int) -> Iterator[Weight]:
    hidden = get_int(cfg, "hidden_size")
    inter = get_int(cfg, layout.dense_inter_key, default=4 * hidden if layout.mlp is Mlp.PLAIN else None)
    if layout.mlp is Mlp.FUSED:
        yield from _fused_mlp(hidden, inter, prefix, layer)
    elif layout.mlp is Mlp.PLAIN:
        up, down = layout.plain_names
        yield Weight(f"{prefix}.{up}", hidden, inter, Role.MLP, layer)
        yield Weight(f"{prefix}.{down}", inter, hidden, Role.MLP, layer)
    else:
        yield from _gated_mlp(hidden, inter, prefix, layer)


def _mlp_block(cfg: Config, prefix: str, layer: int) -> Iterator[Weight]:
    """Dense or MoE feed-forward of one layer, by model_type."""
    hidden = get_int(cfg, "hidden_size")
    model_type = cfg["model_type"]
    if model_type == "phi3":
        yield from _fused_mlp(hidden, get_int(cfg, "intermediate_size"), prefix, layer)
        return
    experts = get_int(cfg, "num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts", default=0)
    layout = LAYOUTS.get(model_type, Layout())
    if not experts or not _is_moe_layer(cfg, layer):
        yield from _dense_mlp(cfg, layout, prefix, layer)
        return
    inter = get_int(cfg, "moe_intermediate_size", "intermediate_size")
    if model_type == "gpt_oss":
        yield _router(hidden, experts, f"{prefix}.router", layer)
        yield from _experts(hidden, inter, experts, f"{prefix}.experts", layer)
        return
    yield _router(hidden, experts, f"{prefix}.{layout.router_leaf}", layer, layout.router_linear)
    yield from _experts(hidden, inter, experts, f"{prefix}.experts", layer)
    if layout.one_shared_expert:  # Llama-4: one shared expert as wide as a routed one
        yield from _gated_mlp(hidden, inter, f"{prefix}.shared_expert", layer, Role.SHARED_EXPERT)
    shared_inter = cfg.get("shared_expert_intermediate_size")
    if shared_inter:  # Qwen2-MoE / Qwen3.5-MoE: one shared expert with a sigmoid gate
        yield from _gated_mlp(hidden, shared_inter, f"{prefix}.shared_expert", layer, Role.SHARED_EXPERT)
        yield Weight(f"{prefix}.shared_expert_gate", hidden, 1, Role.ROUTER, layer)
    n_shared = get_int(cfg, layout.shared_count_key, default=0)
    if n_shared:  # DeepSeek: shared experts fused into one MLP of n_shared * moe_intermediate
        yield from _gated_mlp(hidden, inter * n_shared, f"{prefix}.shared_experts", layer, Role.SHARED_EXPERT)


def _attention_block(cfg: Config, layer: int, layout: Layout) -> Iterator[Weight]:
    base = f"{layout.layers_prefix}.{layer}"
    model_type = cfg["model_type"]
    if model_type in MLA_TYPES:
        yield from _mla_attention(cfg, f"{base}.self_attn", layer)
    elif model_type == "phi3":
        yield from _fused_qkv_attention(cfg, f"{base}.self_attn", layer)
    elif model_type.startswith("qwen3_5") or model_type == "qwen3_next":
        if is_linear_attention_layer(cfg, layer):
            yield from _linear_attention(cfg, f"{base}.linear_attn", layer)
        else:  # Qwen3-Next always gates its attention output through a doubled q_proj
            gated = bool(cfg.get("attn_output_gate", model_type == "qwen3_next"))
            yield from _attention(cfg, f"{base}.self_attn", layer, gated_q=gated)
    elif model_type == "jamba" and not _is_jamba_attention(cfg, layer):
        yield from _mamba_mixer(cfg, f"{base}.mamba", layer)
    elif layout.fused_qkv:
        yield from _fused_qkv_attention(cfg, f"{base}.{layout.attn_module}", layer, layout.fused_qkv, layout.o_name)
    else:
        yield from _attention(cfg, f"{base}.{layout.attn_module}", layer, o_name=layout.o_name)


SUPPORTED_MODEL_TYPES = frozenset({
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "mixtral",
    "qwen2_moe", "qwen3_moe", "qwen3_vl_text", "qwen3_vl_moe_text", "qwen3_5_text",
    "qwen3_5_moe_text", "deepseek_v3", "kimi_k2", "gpt_oss", "deepseek_v2", "sarvam_mla", "qwen3_next", *LAYOUTS,
})

# transformers config classes whose tie_word_embeddings defaults to True when the file omits it.
TIED_BY_DEFAULT = frozenset({"gemma", "gemma2", "gemma3_text"})

def build_from_config(config: Config, model_id: str, source: str) -> Architecture:
    """The Architecture of a config whose model_type loraplan knows; else UnsupportedModelError."""
    outer_type = config.get("model_type")
    cfg = dict(text_config(config))
    model_type = cfg.get("model_type") or outer_type
    if outer_type == "kimi_k2":
        model_type = "kimi_k2"
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"{model_id}: model_type `{model_type}` has no built-in layout; install the `meta` extra "
            "(torch, transformers) so loraplan can read it from transformers on the meta device"
        )
    cfg["model_type"] = model_type
    layout = LAYOUTS.get(model_type, Layout())
    switched_on = [key for key in layout.unsupported if cfg.get(key)]
    switched_on += [flag.key for flag in layout.requires if not flag(cfg)]
    if switched_on:
        raise UnsupportedModelError(f"{model_id}: `{switched_on[0]}` has no built-in layout for {model_type}")
    where = f"{model_id} config"
    hidden = get_int(cfg, "hidden_size", where=where)
    layers = get_int(cfg, "num_hidden_layers", where=where)
    vocab = get_int(cfg, "vocab_size", where=where)
    tied = bool(cfg.get("tie_word_embeddings", model_type in TIED_BY_DEFAULT or layout.tied_default))
    weights: list[Weight] = [Weight(layout.embed_name, vocab, hidden, Role.EMBED, kind=Kind.EMBEDDING)]
    for layer in range(layers):
        weights.extend(_attention_block(cfg, layer, layout))
        weights.extend(_mlp_block(cfg, f"{layout.layers_prefix}.{layer}.{layout.mlp_module}", layer))
    weights.append(Weight("lm_head", hidden, vocab, Role.UNEMBED))
    matrix_params = sum(w.numel for w in weights if not (tied and w.role is Role.UNEMBED))
    total = matrix_params + vector_params(cfg, weights)
    experts = get_int(cfg, "num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts", default=0)
    top_k = get_int(cfg, "num_experts_per_tok", "experts_per_token", "moe_k", default=0)
    expert_params = sum(w.numel for w in weights if w.role is Role.EXPERT)
    active = total - (expert_params * (experts - top_k) // experts if experts else 0)
    attention_type = attention_type_of(cfg)
    one_shared = bool(cfg.get("shared_expert_intermediate_size")) or layout.one_shared_expert
    shared = get_int(cfg, layout.shared_count_key, default=1 if one_shared else 0)
    return Architecture(
        model_id=model_id,
        model_type=str(outer_type or model_type),
        family=family_of(config),
        hidden_size=hidden,
        num_layers=layers,
        vocab_size=vocab,
        weights=tuple(weights),
        total_params=total,
        active_params=active,
        tie_word_embeddings=tied,
        num_experts=experts,
        experts_per_token=top_k,
        num_shared_experts=shared if experts else 0,
        attention_type=attention_type,
        architectures=tuple(config.get("architectures") or ()),
        source=source,
    )


def attention_type_of(cfg: Config) -> str:
    if "kv_lora_rank" in cfg:
        return "mla"
    if "linear_attention" in (cfg.get("layer_types") or []):
        return "hybrid-linear"
    heads = cfg.get("num_attention_heads")
    kv = cfg.get("num_key_value_heads", heads)
    return "mha" if kv == heads else "gqa"

