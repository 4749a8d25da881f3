"""The trial engine: one short training run of a TrainingSetup on a model and data -> a JSON-able TrialRecord.

Public API (stable; `validate`, `run` and Ray Tune sweeps build on it):

    run_trial(spec: TrialSpec) -> TrialRecord

    spec = TrialSpec(setup=TrainingSetup(...), model=ModelRef("meta-llama/Llama-3.2-1B", random_init=True,
                     layers=2, hidden=64), data="chat.jsonl", tokenizer="examples/tokenizer", steps=20,
                     lr=1e-3, rank=8, alpha=32, seed=0, on_step=report)
    record = run_trial(spec)
    record["losses"], record["eval_loss"], record["tokens_per_s"], record["health"]["status"]

TrialSpec's optional fields override the setup (None = the setup's value, then the defaults below); the
record's `setup` is the TrainingSetup that actually ran, so a trial can be replayed from its record.
`on_step(StepReport)` is called after every optimizer step (and after each held-out evaluation), from the
training thread: a Ray Tune trainable forwards it to `ray.tune.report`, the CLI to its progress bar.

The stack is the field's own: a transformers Trainer on a PEFT LoRA model (full fine-tuning: the same
Trainer without PEFT), batches from loraplan.data's rendering and loss mask (labels -100 outside it).
CPU runs in fp32, CUDA in bf16 autocast: the same code path. A setup's `quantization` (QLoRA) is not applied:
trials run the adapter on unquantised weights, which is what the checks compare. Base models and tokenized data
are cached in-process (one of each), so trials on the same model and data pay the loading once; `clear_cache()`
drops them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypedDict

from loraplan.errors import LoraplanError, require
from loraplan.setup import LoraSpec, Optimization, Schedule, TrainingSetup
from loraplan.train.models import ModelRef

DEFAULT_RANK = 32  # the doctrine's working rank for small SFT sets
DEFAULT_ALPHA = 32.0  # fixed alpha = 32 ("LoRA Without Regret"; tinker-cookbook uses it at every rank)
DEFAULT_BATCH = 8
DEFAULT_SEQ_LEN = 512
DEFAULT_EVAL_FRACTION = 0.1
EVAL_POINTS = 5  # held-out evaluations per trial besides the one before training


class StepReport(TypedDict):
    """What `on_step` receives: eval_loss is None except on steps where the held-out set was scored."""

    step: int
    max_steps: int
    loss: float | None
    eval_loss: float | None
    learning_rate: float | None
    tokens_per_s: float | None
    elapsed_s: float


@dataclass(frozen=True)
class TrialSpec:
    """One trial. Fields left None come from `setup`, then from the module defaults.

    setup: the TrainingSetup to run (from `plan`, or a user's config read by loraplan.formats).
    model: what to train (a ModelRef, or a reference string = ModelRef(reference)).
    data: training file(s) in any format loraplan.data reads.
    tokenizer: tokenizer folder / hub id (None: the model's own; a GGUF file carries its own).
    steps: optimizer steps (>= 1).
    lr / rank / alpha: overrides of setup.optim.learning_rate, setup.lora.rank, setup.lora.alpha.
    full_finetune: train every weight (no PEFT); lr is then the full fine-tuning LR.
    batch_size: sequences per optimizer step (no accumulation); seq_len: truncation length in tokens.
    eval_fraction: share of the data held out (fixed split, independent of the seed); eval_every: steps between
        held-out evaluations (None: EVAL_POINTS evenly spaced).
    mask: loss mask (auto | assistant | last_assistant | completion | all); None: the setup's, else auto.
    seed: LoRA init, data order and dropout (the random-init base model uses a fixed seed of its own).
    device: auto (cuda when present) | cpu | cuda.
    health_every: steps between adapter-health checks (LoraHealthCallback).
    on_step: progress hook, called with a StepReport; not part of the record.
    """

    setup: TrainingSetup
    model: ModelRef | str
    data: str | tuple[str, ...]
    tokenizer: str | None = None
    steps: int = 50
    lr: float | None = None
    rank: int | None = None
    alpha: float | None = None
    full_finetune: bool = False
    batch_size: int | None = None
    seq_len: int | None = None
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    eval_every: int | None = None
    mask: str | None = None
    seed: int = 0
    device: str = "auto"
    health_every: int | None = None
    on_step: Callable[[StepReport], None] | None = field(default=None, compare=False, repr=False)

    @property
    def model_ref(self) -> ModelRef:
        return self.model if isinstance(self.model, ModelRef) else ModelRef(self.model)

    def resolved_setup(self) -> TrainingSetup:
        """The setup that runs: overrides applied, defaults filled in, one batch per step."""
        self.validate()
        lora, optim = self.setup.lora, self.setup.optim
        lr = self.lr if self.lr is not None else optim.learning_rate
        if lr is None:
            raise LoraplanError("no learning rate: the setup names none; pass --lr")
        batch = self.batch_size or optim.effective_batch_size or DEFAULT_BATCH
        seq_len = self.seq_len or self.setup.data.max_length or DEFAULT_SEQ_LEN
        new_lora = lora.model_copy(update={"rank": self.rank or lora.rank or DEFAULT_RANK,
                                           "alpha": self.alpha or lora.alpha or DEFAULT_ALPHA})
        new_optim = optim.model_copy(update={
            "learning_rate": lr, "max_steps": self.steps, "micro_batch_size": batch, "batch_size": None,
            "gradient_accumulation_steps": 1, "num_devices": 1, "epochs": None,
            "schedule": optim.schedule or Schedule.CONSTANT})
        data = self.setup.data.model_copy(update={"max_length": seq_len, "path": _data_name(self.data)})
        return self.setup.model_copy(update={
            "finetuning": "full" if self.full_finetune else "lora", "lora": new_lora, "optim": new_optim,
            "data": data, "model": self.model_ref.describe()})

    def validate(self) -> None:
        """Every problem with the numbers, in one message (bad input is exit 2 at the CLI, never a traceback)."""
        problems = []
        if self.steps < 1:
            problems.append(f"--steps must be at least 1 (got {self.steps})")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"--lr must be a positive number (got {self.lr})")
        for name, value in (("--rank", self.rank), ("--batch-size", self.batch_size), ("--seq-len", self.seq_len),
                            ("--eval-every", self.eval_every), ("--health-every", self.health_every)):
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1 (got {value})")
        if self.alpha is not None and not self.alpha > 0:
            problems.append(f"--alpha must be positive (got {self.alpha})")
        if not 0 <= self.eval_fraction < 1:
            problems.append(f"--eval-fraction must be in [0, 1) (got {self.eval_fraction})")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"--device must be auto, cpu or cuda (got {self.device!r})")
        if problems:
            raise LoraplanError("; ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (setup as its JSON dump, model as a dict, on_step left out)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("setup", "on_step", "model")}
        out["model"] = asdict(self.model_ref)
        out["data"] = list(self.data) if isinstance(self.data, tuple) else self.data
        return out


class TrialRecord(TypedDict):
    """What one trial measured; plain JSON.

    losses: training loss per optimizer step (index i = step i + 1).
    eval_curve: [step, held-out loss] pairs, step 0 = before training; eval_loss: the last one (None: no held-out set).
    tokens_per_s: input tokens (padding excluded) per second of training; trained_tokens: label tokens that carried
        loss; input_tokens: non-padding tokens fed.
    train_seconds: wall time of trainer.train(); peak_memory_bytes / peak_memory_kind: CUDA peak allocated on a GPU,
        the process's peak RSS on a CPU.
    health: LoraHealthCallback.summary() (status, warnings, history); trainable_params / total_params;
        hidden_size: the model's (caps the ranks validate tries).
    setup: the TrainingSetup that ran (JSON); spec: the TrialSpec (JSON); seed; device; dtype; versions.
    data: examples trained / held out / without trained tokens / truncated, mask and format.
    """

    losses: list[float]
    eval_curve: list[list[float]]
    eval_loss: float | None
    tokens_per_s: float
    trained_tokens: int
    input_tokens: int
    train_seconds: float
    peak_memory_bytes: int
    peak_memory_kind: str
    health: dict[str, Any]
    trainable_params: int
    total_params: int
    hidden_size: int
    setup: dict[str, Any]
    spec: dict[str, Any]
    seed: int
    device: str
    dtype: str
    versions: dict[str, str]
    data: dict[str, Any]


def run_trial(spec: TrialSpec) -> TrialRecord:
    """Train `spec` for spec.steps optimizer steps and return what was measured."""
    setup = spec.resolved_setup()
    _require_stack()
    from loraplan.train import trainer as runner

    return runner.execute(spec, setup)


def clear_cache() -> None:
    """Drop the cached base model and tokenized data."""
    _require_stack()
    from loraplan.train import trainer as runner

    runner.CACHE.clear()


def with_overrides(spec: TrialSpec, **changes: Any) -> TrialSpec:
    """A copy of `spec` with fields changed (dataclasses.replace, named for readers of validate/sweep)."""
    return replace(spec, **changes)


def default_setup(lr: float | None = None) -> TrainingSetup:
    """A setup holding only the doctrine's defaults, for trials that state everything else themselves."""
    return TrainingSetup(lora=LoraSpec(rank=DEFAULT_RANK, alpha=DEFAULT_ALPHA, target_modules=("all-linear",)),
                         optim=Optimization(learning_rate=lr, schedule=Schedule.CONSTANT, weight_decay=0.0))


def _data_name(data: str | tuple[str, ...]) -> str:
    return data if isinstance(data, str) else ",".join(data)


def _require_stack() -> None:
    for module in ("torch", "transformers", "peft", "accelerate"):
        require(module, "train", "loraplan run/validate")

