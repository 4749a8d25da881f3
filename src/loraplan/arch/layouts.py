"""Decoder-layer layouts of the Llama-shaped families, as data: names, biases, norms.

Most families people fine-tune differ from Llama only in a few facts: what the output
projection is called, whether q/k/v carry biases, how many norms a layer has and whether they
are LayerNorms with a bias, whether q and k are normalised, how the MLP is named. Each Layout
states those facts for one transformers model_type, read off its modeling file; the builders
turn a Layout and a config.json into weights, and tests/test_arch_families.py holds every
Layout to transformers itself on the meta device and to PEFT.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Flag:
    """A boolean config field, with the default its transformers config class gives it."""

    key: str
    default: bool

    def __call__(self, cfg: dict[str, Any]) -> bool:
        value = cfg.get(self.key)
        return self.default if value is None else bool(value)


# Multi-head latent attention (DeepSeek-V2/V3 layout): low-rank q and kv with up-projections.
MLA_TYPES = frozenset({"deepseek_v3", "kimi_k2", "deepseek_v2", "sarvam_mla"})

ALWAYS = Flag("", True)
NEVER = Flag("", False)


class QkNorm(StrEnum):
    NONE = "none"
    PER_HEAD = "per_head"  # q_norm, k_norm of head_dim each (Qwen3 style)
    FULL = "full"  # q_norm over all query heads, k_norm over all key heads (OLMo-2 style)


class Mlp(StrEnum):
    GATED = "gated"  # gate_proj, up_proj, down_proj
    FUSED = "fused"  # gate_up_proj, down_proj
    PLAIN = "plain"  # one up and one down projection (names in `plain_names`)


@dataclass(frozen=True)
class Layout:
    """What one family's decoder layer holds besides the Llama defaults.

    o_name: leaf name of the attention output projection.
    qkv_bias, o_bias, mlp_bias: whether those projections carry a bias.
    qk_norm / qk_norm_flag: query/key normalisation, and the config field that switches it on.
    norms_per_layer: hidden-size norms in one decoder layer; norm_bias: LayerNorms with a bias
        (the final norm is the same kind).
    mlp / plain_names: the dense MLP's shape and, for a plain one, its (up, down) leaf names.
    lm_head_bias: the unembedding has a bias (Phi-2).
    tied_default: tie_word_embeddings when the config file omits it.
    mlp_module: the feed-forward block's name in a layer (`mlp`, `feed_forward`, `block_sparse_moe`).
    dense_inter_key: the config field giving a dense MLP's width.
    router_leaf / router_linear: the router's name, and whether it is an nn.Linear (PEFT's
        `all-linear` then reaches it) rather than a bare weight in a custom module.
    router_bias: the router has a per-expert score-correction parameter (ERNIE-4.5).
    shared_count_key: the config field giving how many shared experts are fused into one MLP.
    one_shared_expert: a single `shared_expert` of the dense width in every MoE layer (Llama-4).
    unsupported / requires: config fields that, when true / when false, make a layout this
        table does not describe (the model is then read on the meta device instead).
    layers_prefix, embed_name, attn_module: where the decoder layers, the embedding and the
        attention block live (`transformer.h`, `gpt_neox.embed_in`, `self_attention`).
    fused_qkv: leaf name of a single q/k/v projection, empty when they are separate.
    """

    o_name: str = "o_proj"
    qkv_bias: Flag = Flag("attention_bias", False)
    o_bias: Flag = Flag("attention_bias", False)
    mlp_bias: Flag = NEVER
    qk_norm: QkNorm = QkNorm.NONE
    qk_norm_flag: Flag = ALWAYS
    norms_per_layer: int = 2
    norm_bias: bool = False
    mlp: Mlp = Mlp.GATED
    plain_names: tuple[str, str] = ("up_proj", "down_proj")
    lm_head_bias: Flag = NEVER
    tied_default: bool = False
    unsupported: tuple[str, ...] = ()
    requires: tuple[Flag, ...] = ()
    layers_prefix: str = "model.layers"
    embed_name: str = "model.embed_tokens"
    attn_module: str = "self_attn"
    fused_qkv: str = ""
    mlp_module: str = "mlp"
    dense_inter_key: str = "intermediate_size"
    router_leaf: str = "gate"
    router_linear: bool = False
    router_bias: bool = False
    shared_count_key: str = "n_shared_experts"
    one_shared_expert: bool = False


LAYOUTS: dict[str, Layout] = {
    "olmo2": Layout(qk_norm=QkNorm.FULL),
    "olmoe": Layout(qk_norm=QkNorm.FULL, o_bias=NEVER),
    "granite": Layout(mlp_bias=Flag("mlp_bias", False)),
    "smollm3": Layout(mlp_bias=Flag("mlp_bias", False), tied_default=True),
    "cohere2": Layout(norms_per_layer=1, tied_default=True),
    "exaone4": Layout(qkv_bias=NEVER, o_bias=NEVER, qk_norm=QkNorm.PER_HEAD),
    "glm4": Layout(qkv_bias=Flag("attention_bias", True), o_bias=NEVER, norms_per_layer=4, mlp=Mlp.FUSED),
    "glm4_moe": Layout(o_bias=NEVER, qk_norm=QkNorm.PER_HEAD, qk_norm_flag=Flag("use_qk_norm", False)),
    "stablelm": Layout(qkv_bias=Flag("use_qkv_bias", False), o_bias=NEVER, norm_bias=True,
                       unsupported=("qk_layernorm", "use_parallel_residual")),
    "starcoder2": Layout(qkv_bias=Flag("use_bias", True), o_bias=Flag("use_bias", True), norm_bias=True,
                         mlp=Mlp.PLAIN, plain_names=("c_fc", "c_proj"), mlp_bias=Flag("use_bias", True),
                         tied_default=True),
    "phi": Layout(o_name="dense", qkv_bias=ALWAYS, o_bias=ALWAYS, norms_per_layer=1, norm_bias=True,
                  mlp=Mlp.PLAIN, plain_names=("fc1", "fc2"), mlp_bias=ALWAYS, lm_head_bias=ALWAYS,
                  unsupported=("qk_layernorm",)),
    "llama4_text": Layout(mlp_module="feed_forward", dense_inter_key="intermediate_size_mlp", router_leaf="router",
                          router_linear=True, one_shared_expert=True),
    "ernie4_5_moe": Layout(qkv_bias=Flag("use_bias", False), o_bias=Flag("use_bias", False),
                           mlp_bias=Flag("use_bias", False), lm_head_bias=Flag("use_bias", False), tied_default=True,
                           router_bias=True, shared_count_key="moe_num_shared_experts"),
    "phimoe": Layout(norm_bias=True, lm_head_bias=Flag("lm_head_bias", False), router_leaf="router",
                     router_linear=True),
    "granitemoe": Layout(mlp_module="block_sparse_moe", router_leaf="router"),
    "jamba": Layout(mlp_module="feed_forward", router_leaf="router"),
    "gpt_neox": Layout(layers_prefix="gpt_neox.layers", embed_name="gpt_neox.embed_in", attn_module="attention",
                       fused_qkv="query_key_value", o_name="dense", qkv_bias=Flag("attention_bias", True),
                       o_bias=Flag("attention_bias", True), norm_bias=True, mlp=Mlp.PLAIN,
                       plain_names=("dense_h_to_4h", "dense_4h_to_h"), mlp_bias=ALWAYS),
    "falcon": Layout(layers_prefix="transformer.h", embed_name="transformer.word_embeddings",
                     attn_module="self_attention", fused_qkv="query_key_value", o_name="dense",
                     qkv_bias=Flag("bias", False), o_bias=Flag("bias", False), norms_per_layer=1, norm_bias=True,
                     mlp=Mlp.PLAIN, plain_names=("dense_h_to_4h", "dense_4h_to_h"), mlp_bias=Flag("bias", False),
                     dense_inter_key="ffn_hidden_size", tied_default=True,
                     unsupported=("new_decoder_architecture",), requires=(Flag("parallel_attn", True),)),
}
