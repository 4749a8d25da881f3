"""Torch-free builders for the families people fine-tune, held to transformers and PEFT themselves.

Configs come from transformers' own config classes at their default sizes (each class documents
them as a released checkpoint's; a few fields are set to the named release where it differs), with
the layer count cut to a few layers that still hold every kind of layer (dense and MoE, attention and
linear attention) where PEFT is the oracle, and at full depth against transformers. No network.
Oracles: the model transformers builds on the meta device (weights, shapes, roles, total
parameters) and PEFT's trainable count on it.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from loraplan.arch.builders import build_from_config
from loraplan.arch.conventions import Component, budget, parse_targets, peft_spec

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("torch")

# family: (config class, fields beyond the class defaults, layers kept)
FAMILIES: dict[str, tuple[str, dict[str, Any], int]] = {
    "OLMo-2": ("Olmo2Config", {}, 2),
    "OLMoE": ("OlmoeConfig", {}, 2),
    "Granite": ("GraniteConfig", {}, 2),
    "SmolLM3": ("SmolLM3Config", {}, 2),
    "Command-R7B": ("Cohere2Config", {}, 2),
    "StableLM-2": ("StableLmConfig", {}, 2),
    "StableLM-2 (qkv bias)": ("StableLmConfig", {"use_qkv_bias": True}, 2),
    "Starcoder2": ("Starcoder2Config", {}, 2),
    # microsoft/phi-2 (the class defaults are phi-1.5's widths)
    "Phi-2": ("PhiConfig", {"hidden_size": 2560, "intermediate_size": 10240, "num_attention_heads": 32,
                            "num_hidden_layers": 32}, 2),
    "EXAONE-4": ("Exaone4Config", {}, 2),
    "GLM-4": ("Glm4Config", {}, 2),
    # zai-org/GLM-4.5-Air: 96 heads of 128, q/k/v biases, one dense layer first.
    "GLM-4.5-Air": ("Glm4MoeConfig", {"head_dim": 128, "attention_bias": True, "num_key_value_heads": 8}, 2),
    "GLM-4.5 (qk norm)": ("Glm4MoeConfig", {"use_qk_norm": True}, 2),
    "DeepSeek-V2-Lite": ("DeepseekV2Config", {"q_lora_rank": None, "hidden_size": 2048, "num_attention_heads": 16,
                                              "n_routed_experts": 64, "first_k_dense_replace": 1,
                                              "intermediate_size": 10944, "moe_intermediate_size": 1408}, 2),
    "Qwen1.5-MoE": ("Qwen2MoeConfig", {}, 2),
    # meta-llama/Llama-4-Maverick-17B-128E: 128 experts, dense and MoE layers interleaved.
    "Llama-4-Maverick": ("Llama4TextConfig", {"num_local_experts": 128, "interleave_moe_layer_step": 2}, 2),
    "Llama-4-Scout": ("Llama4TextConfig", {}, 2),
    "ERNIE-4.5-MoE": ("Ernie4_5_MoeConfig", {}, 3),
    "ERNIE-4.5-MoE (biases)": ("Ernie4_5_MoeConfig", {"use_bias": True, "tie_word_embeddings": False}, 2),
    "Phi-3.5-MoE": ("PhimoeConfig", {}, 2),
    "GraniteMoE": ("GraniteMoeConfig", {}, 2),
    "Qwen3-Next": ("Qwen3NextConfig", {}, 4),  # three Gated DeltaNet layers, then full attention
    "GPT-NeoX-20B": ("GPTNeoXConfig", {}, 2),
    # EleutherAI/pythia-1b
    "Pythia-1B": ("GPTNeoXConfig", {"hidden_size": 2048, "num_attention_heads": 8, "intermediate_size": 8192,
                                    "vocab_size": 50304, "num_hidden_layers": 16}, 2),
    "Falcon-7B": ("FalconConfig", {}, 2),
    "Jamba-v0.1": ("JambaConfig", {}, 8),  # Mamba layers, one attention layer, MoE every other layer
    "Sarvam-MLA": ("SarvamMLAConfig", {}, 2),
}


def _config(family: str, full_depth: bool = False) -> dict[str, Any]:
    class_name, fields, layers = FAMILIES[family]
    depth = {} if full_depth else {"num_hidden_layers": layers}
    return getattr(transformers, class_name)(**(fields | depth)).to_dict()


def _signature(arch) -> list[tuple]:
    return sorted((w.name, w.in_features, w.out_features, w.num_experts, w.role.value, w.kind.value)
                  for w in arch.weights)


@pytest.fixture(scope="module")
def meta_models() -> dict[str, Any]:
    return {}


def _meta(family: str, cache: dict[str, Any]):
    from loraplan.arch.meta import build_on_meta, instantiate

    if family not in cache:
        config = _config(family)
        cache[family] = (build_on_meta(config, family, use_cache=False), instantiate(config))
    return cache[family]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_builder_equals_transformers_on_the_meta_device(family: str, meta_models: dict[str, Any]) -> None:
    ours = build_from_config(_config(family), family, "test")
    theirs, _ = _meta(family, meta_models)
    assert _signature(ours) == _signature(theirs)
    assert ours.total_params == theirs.total_params
    assert (ours.tie_word_embeddings, ours.num_experts) == (theirs.tie_word_embeddings, theirs.num_experts)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_builder_equals_transformers_at_full_depth(family: str) -> None:
    """Every layer of the real depth: which layers are dense, MoE, Mamba or linear attention follows the config."""
    from loraplan.arch.meta import build_on_meta

    config = _config(family, full_depth=True)
    ours = build_from_config(config, family, "test")
    theirs = build_on_meta(config, family, use_cache=False)
    assert _signature(ours) == _signature(theirs)
    assert ours.total_params == theirs.total_params
    assert (ours.tie_word_embeddings, ours.num_experts) == (theirs.tie_word_embeddings, theirs.num_experts)


def _peft_trainable(model: Any, target_modules: Any, target_parameters: Any) -> int:
    import copy

    lora = peft.LoraConfig(r=1, target_modules=target_modules, target_parameters=target_parameters or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.get_peft_model(copy.deepcopy(model), lora).get_nb_trainable_parameters()[0]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("targets", ["all-linear", "all"])
def test_peft_convention_equals_peft(family: str, targets: str, meta_models: dict[str, Any]) -> None:
    arch = build_from_config(_config(family), family, "test")
    _, model = _meta(family, meta_models)
    comps, names = parse_targets(targets)
    spec = peft_spec(arch, comps | ({Component.UNEMBED} if comps else frozenset()), names)
    modules = spec.target_modules if isinstance(spec.target_modules, str) else list(spec.target_modules)
    assert budget(arch, "peft", targets).per_rank_total == _peft_trainable(model, modules, spec.target_parameters)


def test_qwen15_moe_total_counts_qkv_biases() -> None:
    # Qwen2MoeConfig() is Qwen/Qwen1.5-MoE-A2.7B; transformers on the meta device: 14,315,784,192
    # parameters, 147,456 of them the q/k/v biases (24 layers x 3 x 2048) the builder once left out.
    arch = build_from_config(transformers.Qwen2MoeConfig().to_dict(), "Qwen/Qwen1.5-MoE-A2.7B", "test")
    assert arch.total_params == 14_315_784_192


def test_sarvam_105b_is_built_without_torch() -> None:
    arch = build_from_config(transformers.SarvamMLAConfig().to_dict(), "sarvamai/sarvam-105b", "test")
    assert arch.total_params == 106_031_763_456  # transformers on the meta device (PEFT's base count)
    assert budget(arch, "peft", "all-linear").params(16) == 1_458_075_648


def test_qwen3_next_layer_kinds_follow_full_attention_interval() -> None:
    """A hub config.json gives `full_attention_interval`, not `layer_types`; both mean the same layers."""
    config = _config("Qwen3-Next")
    hub_style = {k: v for k, v in config.items() if k != "layer_types"} | {"full_attention_interval": 4}
    assert _signature(build_from_config(hub_style, "q", "t")) == _signature(build_from_config(config, "q", "t"))


def test_qwen3_next_tinker_splits_qkvz_and_leaves_the_ba_gates_out() -> None:
    cfg = _config("Qwen3-Next")
    arch = build_from_config(cfg, "Qwen3-Next", "test")
    hidden = cfg["hidden_size"]
    key_dim = cfg["linear_num_key_heads"] * cfg["linear_key_head_dim"]
    value_dim = cfg["linear_num_value_heads"] * cfg["linear_value_head_dim"]
    linear_layer = 4 * hidden + 2 * key_dim + 2 * value_dim + (value_dim + hidden)  # q, k, v, z; out_proj
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    full_layer = (hidden + 2 * heads * hd) + 2 * (hidden + kv * hd) + (heads * hd + hidden)
    assert budget(arch, "tinker", "attn", unembed=False).per_rank_total == 3 * linear_layer + full_layer
