"""What `run` and `validate` share: their options, and CONFIG | MODEL -> (TrialSpec without overrides).

A CONFIG (a trainer config file loraplan.formats reads) runs as written; a MODEL (catalogue id, folder, hub id,
.gguf file) gets the setup `plan` would write for that model and data. Options override either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from loraplan.setup import TrainingSetup
    from loraplan.train.models import ModelRef

TargetArg = Annotated[str, typer.Argument(help="trainer config file (runs as written), or a model: catalogue id, "
                                                "folder, hub id or .gguf file (gets plan's setup)")]
DataOpt = Annotated[list[str], typer.Option("--data", help="training data file(s) (any format `tokens` reads)")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="model to train a CONFIG on (default: the "
                                                                   "config's base model)")]
TokenizerOpt = Annotated[str | None, typer.Option("--tokenizer", help="tokenizer folder or hub id (default: the "
                                                                      "model's own)")]
RankOpt = Annotated[int | None, typer.Option("--rank", "-r", help="LoRA rank")]
AlphaOpt = Annotated[float | None, typer.Option("--alpha", help="LoRA alpha")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="learning rate")]
StepsOpt = Annotated[int, typer.Option("--steps", help="optimizer steps per trial")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="sequences per step")]
SeqLenOpt = Annotated[int | None, typer.Option("--seq-len", help="truncate sequences to this many tokens")]
EvalOpt = Annotated[float, typer.Option("--eval-fraction", help="share of the data held out for the eval loss")]
RandomOpt = Annotated[bool, typer.Option("--random-init", help="random weights (architecture only), for smoke runs")]
LayersOpt = Annotated[int | None, typer.Option("--layers", help="with --random-init: decoder layers")]
HiddenOpt = Annotated[int | None, typer.Option("--hidden", help="with --random-init: hidden size")]
SeedOpt = Annotated[int, typer.Option("--seed", help="LoRA init and data order")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda")]
MaskOpt = Annotated[str | None, typer.Option("--mask", help="auto | assistant | last_assistant | completion | all")]


@dataclass(frozen=True)
class Inputs:
    """The resolved target: the setup to run, the model to run it on, where it came from."""

    setup: TrainingSetup
    model: ModelRef
    source: str  # "config <path> (<format>)" or "plan for <model>"


def resolve(target: str, model: str | None, data: list[str], tokenizer: str | None, random_init: bool,
            layers: int | None, hidden: int | None, seq_len: int | None) -> Inputs:
    """CONFIG or MODEL -> Inputs. Bad input raises a LoraplanError (one line, exit 2)."""
    from loraplan.errors import LoraplanError
    from loraplan.train.models import ModelRef

    if not data:
        raise LoraplanError("--data is required (the file to train on)")
    if (layers or hidden) and not random_init:
        raise LoraplanError("--layers and --hidden shrink a --random-init model; add --random-init")
    for name, value in (("--layers", layers), ("--hidden", hidden)):
        if value is not None and value < 1:
            raise LoraplanError(f"{name} must be at least 1 (got {value})")
    path = Path(target).expanduser()
    if path.is_file() and path.suffix.lower() != ".gguf" and path.name != "config.json":
        from loraplan.formats.detect import read_config

        detected = read_config(path)
        reference = model or detected.setup.model
        if not reference:
            raise LoraplanError(f"{path}: the config names no base model; pass --model")
        ref = ModelRef(reference, random_init, layers, hidden)
        return Inputs(detected.setup, ref, f"config {path} ({detected.format})")
    if model is not None:
        raise LoraplanError("--model goes with a CONFIG; a MODEL argument is the model itself")
    ref = ModelRef(target, random_init, layers, hidden)
    return Inputs(_planned_setup(ref, data, tokenizer, seq_len), ref, f"plan for {target}")


def _planned_setup(ref: ModelRef, data: list[str], tokenizer: str | None, seq_len: int | None) -> TrainingSetup:
    """The setup `plan` writes for this model and data (trained tokens counted with the run's tokenizer)."""
    from loraplan.data import count_trained_tokens
    from loraplan.plan import DataFacts, PlanRequest, make_plan
    from loraplan.setup import LossMask
    from loraplan.train.models import load_tokenizer_for

    arch = _architecture(ref)
    bundle, _ = load_tokenizer_for(ref, tokenizer)
    length = seq_len or 2048
    count = count_trained_tokens(data, bundle, max_length=length)
    mask = count.mask if count.mask in LossMask._value2member_map_ else None
    facts = DataFacts(path=",".join(data), examples=count.examples, trained_tokens=count.trained_tokens,
                      total_tokens=count.total_tokens, format=count.format or None,
                      loss_mask=LossMask(mask) if mask else None)
    return make_plan(arch, PlanRequest(data=facts, seq_len=length)).setup


def _architecture(ref: ModelRef):  # -> Architecture
    from loraplan.arch.sources import architecture_from_config, load_architecture

    if not ref.is_gguf:
        return load_architecture(ref.reference, ref.trust_remote_code)
    from loraplan.errors import ModelNotFoundError, require

    path = Path(ref.reference).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such GGUF file")
    transformers = require("transformers", "train", "reading a GGUF model")
    config = transformers.AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).to_dict()
    return architecture_from_config(config, path.name, "gguf")
