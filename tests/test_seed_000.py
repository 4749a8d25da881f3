"""Every assert in the executed blocks of seed 000, through our API, CLI and pure rules.

Models whose real config we bundle go through the catalogue; Qwen3.5-9B and Qwen3.5-35B-A3B's
hidden size come from the seed's own table, through the pure rule functions.
"""

from __future__ import annotations

import pytest

from loraplan import hyperparam_utils
from loraplan.errors import LoraplanError, UncalibratedFamilyError
from loraplan.rules.capacity import min_rank
from loraplan.rules.lr import recommend_lr

SEED_HIDDEN = {
    "meta-llama/Llama-3.2-1B": ("llama", 2048),
    "meta-llama/Llama-3.1-8B": ("llama", 4096),
    "meta-llama/Llama-3.1-70B": ("llama", 8192),
    "Qwen/Qwen3.5-35B-A3B": ("qwen", 2048),
    "Qwen/Qwen3.5-9B": ("qwen", 4096),
    "Qwen/Qwen3.5-27B": ("qwen", 5120),
}
CATALOGUED = [m for m in SEED_HIDDEN if m != "Qwen/Qwen3.5-9B"]


def _lr(model: str, is_lora: bool = True) -> float:
    family, hidden = SEED_HIDDEN[model]
    return recommend_lr(family, hidden, is_lora).lr


@pytest.mark.parametrize("model", CATALOGUED)
def test_catalogue_reads_the_seed_hidden_sizes(model: str) -> None:
    from loraplan.arch import load_architecture

    arch = load_architecture(model)
    assert (arch.family, arch.hidden_size) == SEED_HIDDEN[model]


@pytest.mark.parametrize("model", list(SEED_HIDDEN))
def test_lora_over_full_ratio_is_ten(model: str) -> None:
    assert abs(_lr(model, True) / _lr(model, False) - 10.0) < 1e-12
    if model in CATALOGUED:
        ratio = hyperparam_utils.get_lr(model, True) / hyperparam_utils.get_lr(model, False)
        assert abs(ratio - 10.0) < 1e-12


def test_llama_8b_spot_value() -> None:
    lr_8b = hyperparam_utils.get_lr("meta-llama/Llama-3.1-8B")
    assert abs(lr_8b - 5e-4 * (2000 / 4096) ** 0.781) < 1e-19
    assert 2.8e-4 < lr_8b < 2.9e-4


def test_llama_width_ratio() -> None:
    ratio = hyperparam_utils.get_lr("meta-llama/Llama-3.2-1B") / hyperparam_utils.get_lr("meta-llama/Llama-3.1-70B")
    assert abs(ratio - (8192 / 2048) ** 0.781) < 1e-12 and 2.9 < ratio < 3.0


def test_qwen_family_is_nearly_flat() -> None:
    qwen = [_lr(m) for m in SEED_HIDDEN if m.startswith("Qwen")]
    assert max(qwen) / min(qwen) < 1.08


def test_uncalibrated_family_raises() -> None:
    with pytest.raises(UncalibratedFamilyError, match="--lr"):
        hyperparam_utils.get_lr("mistralai/Mistral-7B-v0.3")
    assert issubclass(UncalibratedFamilyError, ValueError)


# Capacity block: per-rank components as the seed gives them (Qwen3.5-9B is not catalogued).
QWEN35_9B = {"mlp": 1_572_864, "attn": 1_130_496, "unembed": 252_416}


def test_rank_32_capacity_on_qwen35_9b() -> None:
    assert 32 * sum(QWEN35_9B.values()) == 94_584_832


def test_min_rank_for_500m_tokens() -> None:
    assert min_rank(500_000_000, sum(QWEN35_9B.values())) == 170


def test_min_rank_is_monotonic() -> None:
    ranks = [min_rank(int(n), sum(QWEN35_9B.values())) for n in (1e6, 1e8, 1e9)]
    assert ranks == sorted(ranks)


def test_attention_only_share_on_qwen35_9b() -> None:
    full = sum(QWEN35_9B.values())
    assert 0.37 < QWEN35_9B["attn"] / full < 0.39


def test_deepseek_mlp_share_from_the_catalogue() -> None:
    parts = hyperparam_utils.get_lora_param_count("deepseek-ai/DeepSeek-V3.1", lora_rank=1, detailed=True)
    assert isinstance(parts, dict)
    assert parts["mlp"] / (parts["mlp"] + parts["attn"] + parts["unembed"]) > 0.97


def test_no_submodule_raises() -> None:
    with pytest.raises(LoraplanError):
        hyperparam_utils.get_lora_param_count("Qwen/Qwen3-8B", 32, train_mlp=False, train_attn=False,
                                              train_unembed=False)


def test_qwen3_8b_drop_in_count() -> None:
    # 32 * (1,769,472 + 958,464 + 156,032), the published per-rank components of Qwen3-8B.
    assert hyperparam_utils.get_lora_param_count("Qwen/Qwen3-8B", 32) == 32 * (1_769_472 + 958_464 + 156_032)
