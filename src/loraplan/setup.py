"""TrainingSetup: the one intermediate representation of a LoRA (or full) fine-tuning run.

Plans produce it, format writers consume it, format readers produce it, checks inspect it. A
field that a source does not state stays None ("unknown"), so a check that needs it can say so
instead of guessing. Every model is strict (unknown keys are an error) and frozen.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Method(StrEnum):
    SFT = "sft"
    DPO = "dpo"
    RL = "rl"
    DISTILL = "distill"


class Schedule(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"
    OTHER = "other"


class LossMask(StrEnum):
    ASSISTANT = "assistant"  # every assistant turn (TRL assistant_only_loss, Axolotl roles_to_train)
    LAST_ASSISTANT = "last_assistant"
    COMPLETION = "completion"  # prompt/completion data: completion tokens only
    ALL = "all"  # every token (text, continued pre-training)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class LoraSpec(_Model):
    """The adapter. `target_modules` holds module names, or ["all-linear"]."""

    rank: int | None = Field(default=None, ge=1)
    alpha: float | None = Field(default=None, gt=0)
    use_rslora: bool | None = None
    dropout: float | None = Field(default=None, ge=0, lt=1)
    target_modules: tuple[str, ...] | None = None
    target_parameters: tuple[str, ...] | None = None
    unembed: bool | None = None
    init_lora_weights: str | bool | None = None  # True (B = 0), False, "gaussian", "pissa", ...
    use_dora: bool | None = None
    modules_to_save: tuple[str, ...] | None = None  # trained fully next to the adapter (lm_head, embed_tokens)
    loraplus_lr_ratio: float | None = Field(default=None, gt=0)  # LoRA+: B trains at this multiple of the LR
    variants: tuple[str, ...] | None = None  # other LoRA-variant switches the file turns on, as `key = value`

    @field_validator("target_modules", "target_parameters")
    @classmethod
    def _as_sorted_set(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """Order carries no meaning in any trainer (PEFT saves them as a sorted set)."""
        return None if value is None else tuple(sorted(set(value)))

    @property
    def scale(self) -> float | None:
        """alpha/r (or alpha/sqrt(r) with rsLoRA): the multiplier on B @ A."""
        if self.rank is None or self.alpha is None:
            return None
        return self.alpha / (self.rank**0.5 if self.use_rslora else self.rank)


class Optimization(_Model):
    """Optimiser and schedule. Effective batch = micro x accumulation x devices."""

    learning_rate: float | None = Field(default=None, gt=0)
    schedule: Schedule | None = None
    warmup_steps: int | None = Field(default=None, ge=0)
    warmup_ratio: float | None = Field(default=None, ge=0, le=1)
    weight_decay: float | None = Field(default=None, ge=0)
    micro_batch_size: int | None = Field(default=None, ge=1)
    gradient_accumulation_steps: int | None = Field(default=None, ge=1)
    num_devices: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)  # stated directly (tinker, torchtune global)
    epochs: float | None = Field(default=None, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    optimizer: str | None = None
    max_grad_norm: float | None = Field(default=None, ge=0)

    @property
    def effective_batch_size(self) -> int | None:
        if self.batch_size is not None:
            return self.batch_size
        if self.micro_batch_size is None:
            return None
        return self.micro_batch_size * (self.gradient_accumulation_steps or 1) * (self.num_devices or 1)


class DataSpec(_Model):
    path: str | None = None
    format: str | None = None
    loss_mask: LossMask | None = None
    max_length: int | None = Field(default=None, ge=1)
    examples: int | None = Field(default=None, ge=0)
    trained_tokens: int | None = Field(default=None, ge=0)
    chat_template: str | None = None  # tokenizer folder or Jinja file whose template the trainer must use


class MethodExtras(_Model):
    dpo_beta: float | None = Field(default=None, gt=0)
    group_size: int | None = Field(default=None, ge=1)  # RL: samples per prompt
    groups_per_batch: int | None = Field(default=None, ge=1)
    teacher: str | None = None  # distillation


class TrainingSetup(_Model):
    """A whole run. `finetuning` is "lora" or "full"; `quantization` None, "8bit" or "4bit"."""

    model: str | None = None
    method: Method | None = None
    finetuning: str | None = "lora"
    quantization: str | None = None
    lora: LoraSpec = LoraSpec()
    optim: Optimization = Optimization()
    data: DataSpec = DataSpec()
    extras: MethodExtras = MethodExtras()

    @property
    def is_lora(self) -> bool:
        return self.finetuning != "full"
