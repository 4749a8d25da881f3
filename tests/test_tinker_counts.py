"""Tinker-convention per-rank counts against tinker-cookbook's published table.

Oracle: `_LORA_PARAMS_PER_RANK_BY_COMPONENT` in tinker-cookbook's tinker_cookbook/hyperparam_utils.py
(https://github.com/thinking-machines-lab/tinker-cookbook, commit 9dfcc3a2cf44432d621a01005073dc6d76a1e87a),
the per-rank counts the Tinker service measured. Below: every row of that table whose model is in
loraplan's catalogue (20 of its 38). Our counts are computed from the bundled config.json files, never
looked up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loraplan.arch import load_architecture
from loraplan.arch.conventions import Component, budget
from loraplan.arch.sources import catalog

PUBLISHED = {
    # model: (mlp, attn, unembed) per rank, as the table gives them (its mlp = our mlp_total)
    "Qwen/Qwen3-30B-A3B": (14_450_688, 835_584, 153_984),
    "Qwen/Qwen3-32B": (5_898_240, 2_490_368, 157_056),
    "Qwen/Qwen3-4B-Instruct-2507": (1_327_104, 737_280, 154_496),
    "Qwen/Qwen3-8B": (1_769_472, 958_464, 156_032),
    "Qwen/Qwen3-VL-235B-A22B-Instruct": (56_598_528, 3_176_448, 156_032),
    "Qwen/Qwen3-VL-30B-A3B-Instruct": (14_450_688, 835_584, 153_984),
    "Qwen/Qwen3.5-27B": (4_325_376, 2_965_504, 253_440),
    "Qwen/Qwen3.5-35B-A3B": (16_281_600, 1_013_760, 250_368),
    "Qwen/Qwen3.5-397B-A17B": (96_030_720, 2_841_600, 252_416),
    "Qwen/Qwen3.6-35B-A3B": (16_281_600, 1_013_760, 250_368),
    "deepseek-ai/DeepSeek-V3.1": (94_307_328, 2_440_000, 136_448),
    "meta-llama/Llama-3.1-70B": (8_847_360, 4_096_000, 136_448),
    "meta-llama/Llama-3.1-8B": (1_769_472, 851_968, 132_352),
    "meta-llama/Llama-3.2-1B": (491_520, 212_992, 130_304),
    "meta-llama/Llama-3.2-3B": (946_176, 573_440, 131_328),
    "meta-llama/Llama-3.3-70B-Instruct": (8_847_360, 4_096_000, 136_448),
    "moonshotai/Kimi-K2-Thinking": (144_583_680, 1_940_288, 171_008),
    "moonshotai/Kimi-K2.5": (144_583_680, 1_940_288, 171_008),
    "openai/gpt-oss-120b": (40_124_160, 746_496, 203_968),
    "openai/gpt-oss-20b": (6_842_880, 497_664, 203_968),
}


def test_every_published_model_is_catalogued() -> None:
    assert {m.lower() for m in PUBLISHED} <= set(catalog())


@pytest.mark.parametrize("model_id", sorted(PUBLISHED))
def test_tinker_per_rank_matches_published_table(model_id: str) -> None:
    result = budget(load_architecture(model_id))
    mlp_total, attn, unembed = PUBLISHED[model_id]
    assert (result.mlp_total, result.per_rank[Component.ATTN], result.per_rank[Component.UNEMBED]) == (
        mlp_total, attn, unembed)


def test_deepseek_mla_up_projections_are_left_out() -> None:
    arch = load_architecture("deepseek-ai/DeepSeek-V3.1")
    adapted = {name.rsplit(".", 1)[-1] for name, _ in budget(arch).adapted}
    assert "q_b_proj" not in adapted and "kv_b_proj" not in adapted
    assert {"q_a_proj", "kv_a_proj_with_mqa", "o_proj"} <= adapted


# Hand-derived from the saved configs (SOURCES.md "Other dense configs"): sum of (in + out).
DERIVED = {
    "meta-llama/Llama-2-7b-hf": (1_449_984, 1_048_576, 36_096),
    "mistralai/Mistral-7B-v0.3": (1_769_472, 851_968, 36_864),
    "google/gemma-2-9b": (2_257_920, 1_118_208, 259_584),
    "google/gemma-3-1b-it": (628_992, 186_368, 263_296),
    "microsoft/Phi-3-mini-4k-instruct": (1_081_344, 786_432, 35_136),  # fused qkv / gate_up split
    "Qwen/Qwen2.5-0.5B": (414_720, 135_168, 152_832),
    "Qwen/Qwen3-VL-4B-Instruct": (1_327_104, 737_280, 154_496),  # text_config
    "Qwen/Qwen3-VL-2B-Instruct": (688_128, 401_408, 153_984),
}


@pytest.mark.parametrize("model_id", sorted(DERIVED))
def test_tinker_per_rank_matches_hand_derivation(model_id: str) -> None:
    result = budget(load_architecture(model_id))
    assert (result.mlp_total, result.per_rank[Component.ATTN], result.per_rank[Component.UNEMBED]) == DERIVED[
        model_id]


def test_shared_outer_vs_per_expert_on_qwen3_moe() -> None:
    # 48 layers x 3 matrices; shared-outer: 2048 + 128*768 each; per-expert: 128 * (2048 + 768).
    arch = load_architecture("Qwen/Qwen3-30B-A3B")
    assert budget(arch, "tinker").per_rank[Component.EXPERTS] == 48 * 3 * (2048 + 128 * 768)
    assert budget(arch, "per-expert").per_rank[Component.EXPERTS] == 48 * 3 * 128 * (2048 + 768)


def test_choosing_nothing_is_an_error() -> None:
    from loraplan.errors import LoraplanError

    with pytest.raises(LoraplanError, match="no LoRA target"):
        budget(load_architecture("Qwen/Qwen3-8B"), targets=[], unembed=False)


def test_exact_total_params_llama_8b() -> None:
    # Oracle: PEFT print_trainable_parameters for Llama-3-8B (research notes O9): base 8,030,261,248.
    assert load_architecture("meta-llama/Llama-3.1-8B").total_params == 8_030_261_248


def test_gated_deltanet_layers_count_q_k_v_z_and_out_but_not_the_a_b_gates() -> None:
    # The published table is lower than every linear weight at (in + out) by exactly 2 x linear_num_value_heads
    # per linear-attention layer; counting in_proj_qkv as its q, k, v matrices (+2 x hidden) and leaving the
    # per-head gates in_proj_a / in_proj_b out (-2 x (hidden + value heads)) is that difference.
    arch = load_architecture("Qwen/Qwen3.5-27B")
    adapted = {name.rsplit(".", 1)[-1] for name, _ in budget(arch).adapted if ".linear_attn." in name}
    assert adapted == {"in_proj_qkv", "in_proj_z", "out_proj"}
    qkv = next(w for w in arch.weights if w.leaf == "in_proj_qkv")
    cost = dict(budget(arch).adapted)[qkv.name]
    assert cost == 3 * qkv.in_features + qkv.out_features


NEMOTRON = {  # tinker-cookbook table, same commit: (mlp, attn, unembed) per rank
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": (11_346_176, 584_832, 133_760),
    "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16": (111_349_760, 1_675_264, 135_168),
}
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "configs"


def _nemotron_super_config() -> dict:
    """Nemotron-3 Super's hyperparameters (88 layers: 40 Mamba-2, 40 latent MoE, 8 attention).

    The order of the layers is not the release's; per-rank counts do not depend on it.
    """
    return {"model_type": "nemotron_h", "architectures": ["NemotronHForCausalLM"], "hidden_size": 4096,
            "num_hidden_layers": 88, "hybrid_override_pattern": "ME" * 40 + "*" * 8, "num_attention_heads": 32,
            "num_key_value_heads": 2, "head_dim": 128, "vocab_size": 131072, "n_routed_experts": 512,
            "num_experts_per_tok": 22, "moe_intermediate_size": 2688, "moe_latent_size": 1024,
            "moe_shared_expert_intermediate_size": 5376, "n_shared_experts": 1, "ssm_state_size": 128,
            "conv_kernel": 4, "mamba_num_heads": 128, "mamba_head_dim": 64, "n_groups": 8,
            "tie_word_embeddings": False, "mlp_hidden_act": "relu2"}


def _nemotron_case(model_id: str) -> dict:
    if "Super" in model_id:
        if not os.environ.get("LORAPLAN_SLOW"):
            pytest.skip("Nemotron-3 Super on the meta device takes ~10 s: set LORAPLAN_SLOW=1")
        return _nemotron_super_config()
    return json.loads((FIXTURES / "nvidia-nemotron-3-nano-30b-a3b.json").read_text())


@pytest.mark.parametrize("model_id", sorted(NEMOTRON))
def test_nemotron_h_matches_the_published_table(model_id: str) -> None:
    """Mamba-2 mixers count under attn with z and x of in_proj (B, C, dt left out); latent MoE shares the latent."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from loraplan.arch.sources import architecture_from_config

    arch = architecture_from_config(_nemotron_case(model_id), model_id, "test")
    result = budget(arch)
    assert (result.mlp_total, result.per_rank[Component.ATTN], result.per_rank[Component.UNEMBED]) == NEMOTRON[
        model_id]
