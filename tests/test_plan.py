"""The plan: each rule's number, each method, capacity edge cases and user overrides.

Oracles: the seed documents' values (working defaults by method, the LR formula, capacity
arithmetic) recomputed by hand in each test.
"""

from __future__ import annotations

import math

import pytest

from loraplan.arch import load_architecture
from loraplan.errors import LoraplanError, UncalibratedFamilyError
from loraplan.plan import DataFacts, PlanRequest, make_plan
from loraplan.setup import Method

LLAMA_8B_PER_RANK = 1_769_472 + 851_968 + 132_352  # tinker-cookbook's published components


@pytest.fixture(scope="module")
def llama():
    return load_architecture("meta-llama/Llama-3.1-8B")


def test_sft_defaults_follow_the_doctrine(llama) -> None:
    plan = make_plan(llama, PlanRequest(data=DataFacts(examples=20_000, trained_tokens=10_000_000)))
    setup = plan.setup
    assert setup.lora.rank == 32 and setup.lora.alpha == 32 and setup.lora.scale == 1.0
    # LR = 5e-4 * (2000/4096)^0.781 at batch 128, x sqrt(64/128) at the default batch 64.
    assert setup.optim.learning_rate == pytest.approx(5e-4 * (2000 / 4096) ** 0.781 * math.sqrt(64 / 128))
    assert setup.optim.effective_batch_size == 64
    assert setup.optim.max_steps == math.ceil(20_000 / 64)
    assert set(setup.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj", "lm_head"}
    assert plan.trainable_params == 32 * LLAMA_8B_PER_RANK
    assert plan.capacity is not None and plan.capacity.status.value == "OK"


def test_rank_rises_to_the_next_power_of_two_when_capacity_is_short(llama) -> None:
    tokens = 100 * LLAMA_8B_PER_RANK + 1  # needs rank 101 -> 128
    plan = make_plan(llama, PlanRequest(data=DataFacts(examples=50_000, trained_tokens=tokens)))
    assert plan.setup.lora.rank == 128
    assert "raised from 32" in plan.why("lora.rank").reason


def test_huge_corpus_recommends_full_fine_tuning(llama) -> None:
    tokens = 300 * LLAMA_8B_PER_RANK  # rank 300 > 256
    plan = make_plan(llama, PlanRequest(data=DataFacts(examples=1_000_000, trained_tokens=tokens)))
    assert plan.setup.lora.rank == 256
    assert any("full fine-tuning is recommended" in w for w in plan.warnings)


def test_user_max_rank_caps_the_rank(llama) -> None:
    tokens = 100 * LLAMA_8B_PER_RANK
    plan = make_plan(llama, PlanRequest(max_rank=64, data=DataFacts(examples=50_000, trained_tokens=tokens)))
    assert plan.setup.lora.rank == 64 and any("rank 64" in w for w in plan.warnings)


def test_tiny_data_keeps_rank_32_and_reduces_batch_for_100_steps(llama) -> None:
    plan = make_plan(llama, PlanRequest(data=DataFacts(examples=470, trained_tokens=200_000)))
    optim = plan.setup.optim
    assert plan.setup.lora.rank == 32
    assert optim.effective_batch_size == 8  # floor pow2(470/100) = 4, not below 8
    assert optim.epochs == 2 and optim.max_steps == math.ceil(470 * 2 / 8) >= 100


def test_rl_uses_small_rank_and_method_lr(llama) -> None:
    plan = make_plan(llama, PlanRequest(method=Method.RL, data=DataFacts(trained_tokens=10**12)))
    setup = plan.setup
    assert setup.lora.rank == 32  # capacity does not drive RL rank
    assert 1e-5 <= setup.optim.learning_rate <= 4e-5
    assert 4 <= setup.extras.group_size <= 16
    assert "rank 1-8" in plan.why("lora.rank").reason


def test_dpo_and_distill_defaults(llama) -> None:
    dpo = make_plan(llama, PlanRequest(method=Method.DPO)).setup
    assert dpo.optim.learning_rate == 1e-5 and dpo.extras.dpo_beta == 0.1 and dpo.lora.rank == 32
    distill = make_plan(llama, PlanRequest(method=Method.DISTILL, teacher="big/teacher")).setup
    assert distill.optim.learning_rate == 1e-4 and distill.lora.rank == 128 and distill.extras.teacher


def test_overrides_are_respected_and_explained(llama) -> None:
    plan = make_plan(llama, PlanRequest(rank=8, lr=1e-3, batch_size=256, alpha=16,
                                        data=DataFacts(examples=100_000, trained_tokens=1_000_000)))
    setup = plan.setup
    assert (setup.lora.rank, setup.optim.learning_rate, setup.optim.effective_batch_size, setup.lora.alpha) == (
        8, 1e-3, 256, 16)
    for name in ("lora.rank", "optim.learning_rate", "optim.batch_size", "lora.alpha"):
        assert plan.why(name).source == "your override"
    assert any("above 128" in w for w in plan.warnings)


def test_uncalibrated_family_needs_lr_or_transfer() -> None:
    mistral = load_architecture("mistralai/Mistral-7B-v0.3")
    from loraplan.rules.calibration import published_calibration

    with pytest.raises(UncalibratedFamilyError):
        make_plan(mistral, PlanRequest(calibration=published_calibration()))
    assert make_plan(mistral, PlanRequest(lr=2e-4)).setup.optim.learning_rate == 2e-4
    llama = load_architecture("meta-llama/Llama-3.1-8B")
    plan = make_plan(mistral, PlanRequest(transfer_from=llama, transfer_lr=2.86e-4, batch_size=128,
                                          calibration=published_calibration()))
    expected = 2.86e-4 * math.sqrt(llama.total_params / mistral.total_params)
    assert plan.setup.optim.learning_rate == pytest.approx(expected)


def test_transfer_without_lr_is_an_error(llama) -> None:
    mistral = load_architecture("mistralai/Mistral-7B-v0.3")
    with pytest.raises(LoraplanError, match="--transfer-lr"):
        make_plan(mistral, PlanRequest(transfer_from=llama))


def test_rslora_below_rank_8_warns(llama) -> None:
    plan = make_plan(llama, PlanRequest(rank=4, rslora=True))
    assert plan.setup.lora.use_rslora and any("rsLoRA" in w for w in plan.warnings)


def test_moe_plan_targets_experts_as_parameters() -> None:
    plan = make_plan(load_architecture("Qwen/Qwen3-30B-A3B"), PlanRequest())
    assert set(plan.setup.lora.target_parameters) == {"experts.gate_up_proj", "experts.down_proj"}
    assert plan.budget.mlp_total == 14_450_688  # tinker's published per-rank MoE count


def test_lora_flops_are_two_thirds_of_full(llama) -> None:
    plan = make_plan(llama, PlanRequest(data=DataFacts(examples=1000, trained_tokens=10**6, total_tokens=2 * 10**6)))
    assert plan.compute.flops_per_token_lora / plan.compute.flops_per_token_full == pytest.approx(2 / 3)
    assert plan.compute.gpu_hours is not None and plan.compute.gpu_hours > 0
