"""execute(): one trial on transformers' Trainer (+ PEFT for LoRA). engine.py holds the public types.

Imported by engine.run_trial only after it checked that the `train` extra is installed, so torch and
transformers are imported at the top here.

Nothing here is a training loop: the Trainer steps, evaluates, logs and places the model; this module
builds its inputs (model, data, arguments, callbacks) and reads the measurements back.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import torch
import transformers

from loraplan.errors import LoraplanError, require
from loraplan.setup import Schedule, TrainingSetup
from loraplan.train.batches import PadCollator, PreparedData, SequenceDataset, prepare
from loraplan.train.engine import EVAL_POINTS, StepReport, TrialRecord, TrialSpec
from loraplan.train.models import load_model, load_tokenizer_for

SCHEDULES = {Schedule.LINEAR: "linear", Schedule.COSINE: "cosine", Schedule.CONSTANT: "constant",
             Schedule.CONSTANT_WITH_WARMUP: "constant_with_warmup", Schedule.OTHER: "constant"}


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    value: Any


class _Cache:
    """One base model and one tokenized data set, kept between trials of the same process."""

    def __init__(self) -> None:
        self.model: _Loaded | None = None
        self.data: _Loaded | None = None
        self.tokenizer: _Loaded | None = None

    def clear(self) -> None:
        self.model = self.data = self.tokenizer = None

    def get(self, slot: str, key: tuple[Any, ...], build: Any) -> Any:
        held = getattr(self, slot)
        if held is None or held.key != key:
            setattr(self, slot, None)
            held = _Loaded(key, build())
            setattr(self, slot, held)
        return held.value


CACHE = _Cache()


def execute(spec: TrialSpec, setup: TrainingSetup) -> TrialRecord:
    ref = spec.model_ref
    device = _device(torch, spec.device)
    bundle, hf_tokenizer = CACHE.get("tokenizer", (ref, spec.tokenizer), lambda: load_tokenizer_for(ref,
                                                                                                   spec.tokenizer))
    seq_len = setup.data.max_length or 512
    mask = spec.mask or (setup.data.loss_mask.value if setup.data.loss_mask else "auto")
    files = spec.data if isinstance(spec.data, str) else tuple(spec.data)
    data: PreparedData = CACHE.get("data", (files, bundle.name, seq_len, spec.eval_fraction, mask),
                                   lambda: prepare(spec.data, bundle, seq_len, spec.eval_fraction, mask))
    dtype = torch.bfloat16 if device == "cuda" and not spec.full_finetune else torch.float32
    base = CACHE.get("model", (ref, bundle.name, str(dtype)), lambda: _load_quietly(transformers, ref, bundle, dtype))
    transformers.set_seed(spec.seed)
    model = copy.deepcopy(base)
    model.config.use_cache = False
    if setup.is_lora:
        with _quiet(transformers):
            model = _with_lora(model, setup)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    from loraplan.train.health import LoraHealthCallback

    health = LoraHealthCallback(every=spec.health_every or max(1, spec.steps // 10), warn=False)  # in the record
    recorder = Recorder(spec)
    eval_every = spec.eval_every or max(1, math.ceil(spec.steps / EVAL_POINTS))
    with tempfile.TemporaryDirectory(prefix="loraplan-trial-") as out_dir, _quiet(transformers):
        args = _arguments(transformers, setup, spec, out_dir, device, eval_every, bool(data.held_out))
        trainer = CountingTrainer(
            model=model, args=args, train_dataset=SequenceDataset(data.train),
            eval_dataset=SequenceDataset(data.held_out) if data.held_out else None,
            data_collator=PadCollator(_pad_id(bundle, hf_tokenizer)), callbacks=[recorder])
        trainer.callback_handler.callbacks.insert(0, health)
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
        trainer.remove_callback(transformers.trainer_callback.ProgressCallback)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        eval_curve: list[list[float]] = []
        if data.held_out:
            eval_curve.append([0.0, float(trainer.evaluate()["eval_loss"])])
        recorder.start(trainer)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    eval_curve += recorder.eval_curve
    peak, kind = _peak_memory(torch, device)
    return TrialRecord(
        losses=recorder.losses, eval_curve=eval_curve, eval_loss=eval_curve[-1][1] if eval_curve else None,
        tokens_per_s=trainer.input_tokens / seconds if seconds > 0 else 0.0, trained_tokens=trainer.trained_tokens,
        input_tokens=trainer.input_tokens, train_seconds=seconds, peak_memory_bytes=peak, peak_memory_kind=kind,
        health=health.summary(), trainable_params=trainable, total_params=total,
        hidden_size=int(getattr(base.config.get_text_config(), "hidden_size", 0) or 0),
        setup=setup.model_dump(mode="json"), spec=spec.as_dict(), seed=spec.seed, device=device,
        dtype=str(dtype).removeprefix("torch."), versions=_versions(),
        data={"train_examples": len(data.train), "held_out_examples": len(data.held_out),
              "untrained_examples": data.untrained, "truncated_examples": data.truncated, "mask": data.mask,
              "format": data.format})


def _load_quietly(transformers: Any, ref: Any, bundle: Any, dtype: Any) -> Any:
    """load_model without transformers' per-tensor progress bars on the user's terminal."""
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        with _quiet(transformers):
            return load_model(ref, bundle, dtype)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _device(torch: Any, wanted: str) -> str:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise LoraplanError("--device cuda: no CUDA device is available")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def _with_lora(model: Any, setup: TrainingSetup) -> Any:
    peft: Any = require("peft", "train", "LoRA trials")
    lora = setup.lora
    targets = list(lora.target_modules or ("all-linear",))
    if lora.unembed and "all-linear" not in targets:
        targets.append("lm_head")
    config = peft.LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout or 0.0, use_rslora=bool(lora.use_rslora),
        use_dora=bool(lora.use_dora), target_modules=targets[0] if targets == ["all-linear"] else targets,
        init_lora_weights=True if lora.init_lora_weights is None else lora.init_lora_weights,
        task_type="CAUSAL_LM")
    try:
        return peft.get_peft_model(model, config)
    except ValueError as exc:
        raise LoraplanError(f"PEFT cannot apply this LoRA setup to {setup.model}: {exc}") from exc


def _arguments(transformers: Any, setup: TrainingSetup, spec: TrialSpec, out_dir: str, device: str,
               eval_every: int, has_eval: bool) -> Any:
    optim = setup.optim
    warmup = optim.warmup_steps if optim.warmup_steps is not None else 0
    if optim.warmup_steps is None and optim.warmup_ratio:
        warmup = math.ceil(optim.warmup_ratio * spec.steps)
    return transformers.TrainingArguments(
        output_dir=out_dir, max_steps=spec.steps, per_device_train_batch_size=optim.micro_batch_size,
        per_device_eval_batch_size=optim.micro_batch_size, gradient_accumulation_steps=1,
        learning_rate=optim.learning_rate, lr_scheduler_type=SCHEDULES[optim.schedule or Schedule.CONSTANT],
        warmup_steps=min(warmup, spec.steps), weight_decay=optim.weight_decay or 0.0,
        max_grad_norm=optim.max_grad_norm if optim.max_grad_norm is not None else 1.0,
        logging_steps=1, eval_strategy="steps" if has_eval else "no", eval_steps=eval_every,
        save_strategy="no", report_to=[], seed=spec.seed, data_seed=spec.seed, use_cpu=device == "cpu",
        bf16=device == "cuda", dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True)


class CountingTrainer(transformers.Trainer):
    """The Trainer, also counting the label tokens that carry loss and the non-padding tokens fed."""

    trained_tokens = 0
    input_tokens = 0

    def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if model.training:
            self.trained_tokens += int((inputs["labels"] != -100).sum())
            self.input_tokens += int(inputs["attention_mask"].sum())
        return super().compute_loss(model, inputs, *args, **kwargs)


class Recorder(transformers.TrainerCallback):
    """Collects losses and held-out losses from the Trainer's logs and forwards them to spec.on_step."""

    def __init__(self, spec: TrialSpec) -> None:
        self.spec = spec
        self.losses: list[float] = []
        self.eval_curve: list[list[float]] = []
        self.started = time.perf_counter()
        self.trainer: CountingTrainer | None = None

    def start(self, trainer: CountingTrainer) -> None:
        self.trainer = trainer
        self.started = time.perf_counter()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        loss, eval_loss = logs.get("loss"), logs.get("eval_loss")
        if loss is not None:
            self.losses.append(float(loss))
        if eval_loss is not None:
            self.eval_curve.append([float(state.global_step), float(eval_loss)])
        if (loss is None and eval_loss is None) or self.spec.on_step is None:
            return
        elapsed = time.perf_counter() - self.started
        seen = self.trainer.input_tokens if self.trainer is not None else 0
        self.spec.on_step(StepReport(
            step=state.global_step, max_steps=state.max_steps, loss=None if loss is None else float(loss),
            eval_loss=None if eval_loss is None else float(eval_loss), learning_rate=logs.get("learning_rate"),
            tokens_per_s=seen / elapsed if elapsed > 0 else None, elapsed_s=elapsed))


def _pad_id(bundle: Any, hf_tokenizer: Any) -> int:
    if hf_tokenizer is not None and hf_tokenizer.pad_token_id is not None:
        return int(hf_tokenizer.pad_token_id)
    for key in ("pad_token", "eos_token", "unk_token"):
        token = bundle.special_tokens.get(key)
        if token is not None and (found := bundle.backend.token_to_id(token)) is not None:
            return int(found)
    return 0


def _peak_memory(torch: Any, device: str) -> tuple[int, str]:
    if device == "cuda":
        return int(torch.cuda.max_memory_allocated()), "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process_peak_rss"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("loraplan", "torch", "transformers", "peft", "accelerate"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


@contextlib.contextmanager
def _quiet(transformers: Any) -> Any:
    """Keep transformers' info chatter off the user's terminal during a trial (warnings still show)."""
    import warnings

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    previous = logging.getLogger("accelerate").level
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*")
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        logging.getLogger("accelerate").setLevel(previous)

