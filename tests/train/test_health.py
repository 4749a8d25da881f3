"""LoraHealthCallback: the Gram-product norm equals the materialised one; a planted explosion warns once with the
fix; a healthy run stays quiet; metrics reach the Trainer's own log history."""

from __future__ import annotations

import logging

import pytest

from tests.train.conftest import tiny_spec


def test_gram_norm_equals_the_materialised_update() -> None:
    """Oracle: the doctrine's own formula, torch.linalg.norm(scale * lora_B @ lora_A), on a PEFT layer."""
    import peft
    import torch

    from loraplan.train.health import update_norm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(48, 80))
    lora = peft.get_peft_model(model, peft.LoraConfig(r=6, lora_alpha=20, target_modules=["0"]))
    layer = lora.base_model.model[0]
    torch.nn.init.normal_(layer.lora_B["default"].weight)
    with torch.no_grad():
        materialised = torch.linalg.norm(layer.scaling["default"] * layer.lora_B["default"].weight
                                         @ layer.lora_A["default"].weight)
    assert update_norm(layer) == pytest.approx(float(materialised), rel=1e-5)


def test_planted_explosion_warns_once_with_the_fix_and_a_healthy_run_stays_quiet() -> None:
    from loraplan.train.engine import run_trial

    exploding = run_trial(tiny_spec(steps=10, alpha=512, lr=1e-2, health_every=2))
    assert exploding["health"]["status"] == "exploding"
    assert len(exploding["health"]["warnings"]) == 1
    assert "lower alpha" in exploding["health"]["warnings"][0]
    healthy = run_trial(tiny_spec(steps=10, health_every=2))
    assert healthy["health"]["status"] == "healthy" and healthy["health"]["warnings"] == []
    assert healthy["health"]["update_ratio_max"] < 1 < exploding["health"]["update_ratio_max"]


def test_in_a_plain_trainer_it_logs_through_the_trainer_and_warns_once(caplog: pytest.LogCaptureFixture,
                                                                       tmp_path) -> None:
    """Anyone's Trainer: a PEFT model, transformers.Trainer, the callback passed in callbacks=[...]."""
    import peft
    import transformers

    from loraplan.data import load_tokenizer
    from loraplan.train import LoraHealthCallback
    from loraplan.train.batches import PadCollator, SequenceDataset, prepare
    from loraplan.train.models import ModelRef, load_model
    from tests.train.conftest import CHAT, TOKENIZER

    bundle = load_tokenizer(str(TOKENIZER))
    model = load_model(ModelRef("meta-llama/Llama-3.2-1B", random_init=True, layers=2, hidden=64), bundle, None)
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=512, target_modules="all-linear"))
    data = prepare(str(CHAT), bundle, 64, 0.0)
    callback = LoraHealthCallback(every=2, layers=4)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=2,
                                          learning_rate=1e-2, logging_steps=4, report_to=[], use_cpu=True,
                                          save_strategy="no", disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=SequenceDataset(data.train),
                                   data_collator=PadCollator(0), callbacks=[callback])
    with caplog.at_level(logging.WARNING, logger="loraplan.train.health"):
        trainer.train()
    warnings = [r for r in caplog.records if r.name == "loraplan.train.health"]
    assert len(warnings) == 1 and "exploding" in warnings[0].getMessage()
    logged = [entry for entry in trainer.state.log_history if "lora/update_norm" in entry]
    assert [entry["step"] for entry in logged] == [2, 4, 6, 8]
    assert len(callback.tracked) == 4
