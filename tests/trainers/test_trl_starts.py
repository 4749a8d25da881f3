"""TRL starts on the plan's export: `trl sft`'s own parser reads it and an SFTTrainer is built from it.

Oracle: TRL itself. The steps are those of trl/scripts/sft.py (make_parser -> get_dataset ->
SFTTrainer(model=model_name_or_path, peft_config=get_peft_config(...))) on a tiny random model folder
and the example data set, offline. Then `check` reads the same file with no error and no warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.trainers.tiny import EXAMPLES, tiny_llama

trl = pytest.importorskip("trl")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def test_trl_sft_builds_a_trainer_from_the_export(model_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from loraplan.cli import _register, app
    from loraplan.doctor import check_config
    from loraplan.formats.detect import read_config

    monkeypatch.chdir(EXAMPLES.parent)  # the export names examples/... relative to where plan ran
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _register()
    export = tmp_path / "sft.yaml"
    result = CliRunner().invoke(app, ["plan", str(model_dir), "--data", "examples/chat.jsonl", "--tokenizer",
                                      "examples/tokenizer", "--format", "trl", "-o", str(export)])
    assert result.exit_code == 0, result.output
    text = export.read_text()
    assert "dataset_name" not in text and "config.json" not in text

    from trl.scripts.sft import make_parser

    script_args, training_args, model_args, dataset_args = make_parser().parse_args_and_config(
        args=["--config", str(export), "--output_dir", str(tmp_path / "out"), "--use_cpu", "true",
              "--bf16", "false", "--report_to", "none"])
    assert model_args.model_name_or_path == str(model_dir)
    dataset = trl.get_dataset(dataset_args)
    assert len(dataset[script_args.dataset_train_split]) == 470
    with _quiet():
        trainer = trl.SFTTrainer(model=model_args.model_name_or_path, args=training_args,
                                 train_dataset=dataset[script_args.dataset_train_split],
                                 peft_config=trl.get_peft_config(model_args))
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert any("mlp" in name for name in trainable) and not any("lm_head" in name for name in trainable)
    assert training_args.assistant_only_loss
    first = trainer.train_dataset[0]
    trained = sum(label != -100 for label in first["labels"])  # TRL's own loss mask: assistant turns only
    assert 0 < trained < len(first["input_ids"])
    stated = read_config(export)
    from loraplan.rules.calibration import resolve_calibration

    report = check_config(stated, str(model_dir), examples=470, calibration=resolve_calibration(None))
    assert not [(f.id, f.title) for f in report.findings if f.severity.value != "info"]


class _quiet:
    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def test_distillation_keeps_its_teacher_for_trl_and_refuses_the_rest(tmp_path: Path) -> None:
    """`trl distillation`'s own parser (trl/scripts/distillation.py make_parser) reads the teacher back."""
    from trl.scripts.distillation import make_parser

    from loraplan.arch import load_architecture
    from loraplan.commands.plan_render import TEACHER_FORMATS, export_text
    from loraplan.errors import LoraplanError
    from loraplan.formats import EXPORT_FORMATS
    from loraplan.plan import DataFacts, PlanRequest, make_plan
    from loraplan.setup import Method

    arch = load_architecture("meta-llama/Llama-3.1-8B")
    facts = DataFacts(path="examples/chat.jsonl", examples=20_000, trained_tokens=10_000_000)
    plan = make_plan(arch, PlanRequest(method=Method.DISTILL, data=facts, teacher="meta-llama/Llama-3.1-70B"))
    path = tmp_path / "distill.yaml"
    path.write_text(export_text(plan.setup, "trl", arch))
    assert "trl distillation" in path.read_text()
    _script, training, _model, _data = make_parser().parse_args_and_config(
        args=["--config", str(path), "--output_dir", str(tmp_path / "out"), "--use_cpu", "true"])
    assert training.teacher_model_name_or_path == "meta-llama/Llama-3.1-70B"
    for fmt in EXPORT_FORMATS:
        if fmt in TEACHER_FORMATS:
            continue
        with pytest.raises(LoraplanError, match="--format trl"):
            export_text(plan.setup, fmt, arch)
    no_teacher = make_plan(arch, PlanRequest(method=Method.DISTILL, data=facts))
    with pytest.raises(LoraplanError, match="--teacher"):
        export_text(no_teacher.setup, "trl", arch)
