"""Rendering and I/O for `loraplan plan`: the Rich summary, JSON, exports, data counting."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loraplan.arch.model import Architecture
from loraplan.plan import DataFacts, Plan
from loraplan.rules.display import fmt_number
from loraplan.rules.sources import references_in
from loraplan.setup import LossMask, Method, TrainingSetup

BAR_WIDTH = 40


def count_data(paths: list[str], tokenizer: str | None, model: str, max_length: int) -> DataFacts:
    """Trained tokens from the token counter (loraplan.data), as the plan needs them.

    Without --tokenizer the model's own tokenizer is tried (a local folder, or the hub); when it
    cannot be had the counter falls back to a byte estimate, which the plan labels as such.
    """
    from loraplan.errors import MissingExtraError

    try:
        from loraplan.data import count_trained_tokens
    except ImportError as exc:
        raise MissingExtraError("counting a dataset needs the `data` extra: pip install 'loraplan[data]'") from exc
    count = count_trained_tokens(paths, tokenizer or model, max_length=max_length)
    mask = count.mask
    loss_mask = LossMask(mask) if isinstance(mask, str) and mask in LossMask._value2member_map_ else None
    # An assistant-only loss needs the template's generation markers: the template the count used travels
    # with the export when it came from a tokenizer the user named (the model's own may lack the markers).
    template = None
    if tokenizer and loss_mask in (LossMask.ASSISTANT, LossMask.LAST_ASSISTANT):
        jinja = Path(tokenizer) / "chat_template.jinja"  # TRL sets a .jinja as is; a folder it clones (new tokens)
        template = str(jinja) if jinja.is_file() else tokenizer
    return DataFacts(
        path=",".join(paths), examples=count.examples, trained_tokens=count.trained_tokens,
        total_tokens=count.total_tokens, format=count.format or None, loss_mask=loss_mask,
        estimated=bool(count.estimated), chat_template=template, tokenizer=tokenizer,
        tokenizer_vocab=_vocab_size(tokenizer) if tokenizer else None,
    )


def _vocab_size(tokenizer: str) -> int | None:
    """The named tokenizer's vocabulary (added tokens included), or None when it cannot be read here."""
    from loraplan.data.tokenizer import load_tokenizer

    try:
        return int(load_tokenizer(tokenizer).backend.get_vocab_size(with_added_tokens=True))
    except Exception:  # the count already succeeded or fell back; a missing size only skips the warning
        return None


def export_text(setup: TrainingSetup, fmt: str, arch: Architecture | None = None) -> str:
    from loraplan.formats import get_format

    if arch is not None:
        setup = expressible_setup(setup, arch, fmt)
    return get_format(fmt).write(loadable_model(setup))


# Trainers that refuse LoRA on lm_head: TRL's SFTTrainer (1.x) computes log-probabilities from
# lm_head.weight directly and raises for an adapter there ("Applying a PEFT adapter to `lm_head` is not
# supported"); Unsloth runs on TRL. The plan leaves the unembedding out for them and says so.
NO_UNEMBED_LORA = {
    "trl": "TRL's SFTTrainer refuses a LoRA adapter on lm_head; the export leaves the unembedding out",
    "unsloth": "Unsloth trains a named lm_head in full (modules_to_save), not with LoRA, and TRL's SFTTrainer "
               "refuses a LoRA adapter there; the export leaves the unembedding out",
}


# Formats whose trainer takes a distillation teacher: TRL's `trl distillation` (DistillationConfig.
# teacher_model_name_or_path). The others have no teacher field loraplan writes.
TEACHER_FORMATS = ("trl",)


def export_notes(setup: TrainingSetup, fmt: str) -> list[str]:
    """What the export cannot say that the plan did."""
    notes = []
    if fmt in NO_UNEMBED_LORA and setup.is_lora and "lm_head" in (setup.lora.target_modules or ()):
        notes.append(NO_UNEMBED_LORA[fmt])
    return notes


def loadable_model(setup: TrainingSetup) -> TrainingSetup:
    """Trainers load a model from a folder or a hub id (`from_pretrained`), never from a config.json path:
    a plan made from `path/config.json` exports `path`."""
    model = setup.model or ""
    if Path(model).name == "config.json":
        return setup.model_copy(update={"model": str(Path(model).parent)})
    return setup


def expressible_setup(setup: TrainingSetup, arch: Architecture, fmt: str) -> TrainingSetup:
    """The plan as `fmt` can state it for this model, or an error when the trainer cannot adapt its experts.

    LLaMA-Factory names modules, not parameters: for MoE layouts PEFT converts from the transformers-4
    names (Qwen-MoE `gate_proj`..., Mixtral `w1`...), those names reach the stacked experts; for other
    layouts nothing does. torchtune's LoRA builders have no HF MoE model at all. Refusing beats writing
    a config that `loraplan check` would flag for frozen experts.
    """
    from loraplan.errors import LoraplanError

    params = setup.lora.target_parameters
    if setup.method is Method.DISTILL:
        if fmt not in TEACHER_FORMATS:
            raise LoraplanError(f"{fmt} cannot state a distillation teacher; for --task distill choose --format "
                                f"{' or '.join(TEACHER_FORMATS)}")
        if not setup.extras.teacher:
            raise LoraplanError("--task distill needs --teacher MODEL (the model the student learns from)")
    if fmt == "torchtune" and setup.is_lora and not arch.is_moe:
        from loraplan.formats.torchtune import BUILDER_OF, model_files

        builder = BUILDER_OF.get(arch.model_id.lower())
        if builder is None or builder not in model_files():
            raise LoraplanError(f"torchtune (0.6.1, its latest release) has no LoRA builder for {arch.model_id}; "
                                "choose --format peft, peft-python, trl, axolotl, llamafactory, unsloth or tinker")
    if fmt in NO_UNEMBED_LORA and setup.is_lora and "lm_head" in (setup.lora.target_modules or ()):
        lora = setup.lora.model_copy(update={
            "target_modules": tuple(t for t in setup.lora.target_modules or () if t != "lm_head"), "unembed": False})
        setup = setup.model_copy(update={"lora": lora})
    if not setup.is_lora or not arch.is_moe or fmt not in ("torchtune", "llamafactory"):
        return setup
    others = "choose --format peft, trl, axolotl, unsloth or tinker"
    if fmt == "torchtune":
        from loraplan.formats.torchtune import MOE_BUILDERS

        if arch.model_type in MOE_BUILDERS:  # Llama 4: apply_lora_to_mlp adapts the experts (LoRAGroupedExperts)
            return setup
        raise LoraplanError(f"torchtune's LoRA builders cannot adapt the MoE experts of {arch.model_id} (its only MoE "
                            f"LoRA builders are Llama 4's); {others}")
    if not params:
        return setup
    from loraplan.arch.peft_rules import expert_target_names

    names = expert_target_names(arch)
    if not names:
        raise LoraplanError(f"LLaMA-Factory cannot name the stacked experts of {arch.model_id} "
                            f"({', '.join(params)}); {others}")
    modules = tuple(dict.fromkeys((*(setup.lora.target_modules or ()), *names)))
    lora = setup.lora.model_copy(update={"target_modules": modules, "target_parameters": None})
    return setup.model_copy(update={"lora": lora})


def write_export(path: Path, text: str, inputs: list[str] | tuple[str, ...] = ()) -> None:
    """Atomically, never over a symlink, device or one of the command's `inputs`."""
    from loraplan.atomicwrite import write_atomic

    write_atomic(path, text, inputs)


def as_json(plan: Plan, fmt: str | None, output: Path | None) -> dict[str, Any]:
    capacity = plan.capacity
    return {
        "setup": plan.setup.model_dump(mode="json", exclude_none=True),
        "explanations": [{"field": e.field, "value": e.value, "reason": e.reason, "source": e.source}
                         for e in plan.explanations],
        "warnings": list(plan.warnings),
        "notes": list(plan.notes),
        "per_rank": plan.budget.as_dict(),
        "convention": plan.budget.convention.value,
        "trainable_params": plan.trainable_params,
        "model_params": plan.model_params,
        "trainable_share": plan.trainable_params / plan.model_params,
        "capacity": None if capacity is None else {
            "status": capacity.status.value, "message": capacity.message, "min_rank": capacity.min_rank,
            "suggested_rank": capacity.suggested_rank, "headroom": capacity.headroom, "rule": capacity.rule.value},
        "estimates": {"label": "estimates, not measurements", "memory_gib": asdict(plan.memory),
                      "compute": asdict(plan.compute),
                      "memory_per_device": asdict(plan.memory_verdict) if plan.memory_verdict else None},
        "export": None if fmt is None else {"format": fmt, "path": str(output) if output else None},
        "lr_rule": plan.lr_rule,
        "references": dict(references_in(e.source for e in plan.explanations)),
    }


def capacity_bar(plan: Plan) -> str:
    capacity = plan.capacity
    if capacity is None:
        return "capacity: unchecked (no token count; give --data or --tokens)"
    filled = min(BAR_WIDTH, round(BAR_WIDTH * min(1.0, capacity.tokens / max(capacity.params, 1))))
    color = "green" if capacity.status.value == "OK" else "red"
    bar = f"[{color}]" + "█" * filled + "[/]" + "░" * (BAR_WIDTH - filled)
    return (f"capacity {bar} {capacity.tokens:,} trained tokens / {capacity.params:,} LoRA params "
            f"({capacity.headroom:.2f}x headroom, {capacity.status.value})")


def render(console: Console, arch: Architecture, plan: Plan, explain: bool) -> None:
    setup = plan.setup
    optim, lora = setup.optim, setup.lora
    table = Table(title=f"LoRA plan: {escape(arch.model_id)} ({setup.method.value if setup.method else '?'})",
                  title_justify="left", show_header=False)
    table.add_column("setting")
    table.add_column("value")
    rows = [
        ("learning rate", f"{fmt_number(optim.learning_rate)} ({optim.schedule.value if optim.schedule else '?'} "
                          f"decay, {optim.warmup_steps or 0} warmup steps)"),
        ("LR rule", plan.lr_rule),
        ("rank / alpha", f"{lora.rank} / {lora.alpha:g} (scale {fmt_number(lora.scale)}, "
                         f"{'alpha/sqrt(r)' if lora.use_rslora else 'alpha/r'})"),
        ("targets", ", ".join(lora.target_modules or ()) + (
            f"; experts: {', '.join(lora.target_parameters)}" if lora.target_parameters else "")),
        ("batch", f"{optim.effective_batch_size} = {optim.micro_batch_size} micro x "
                  f"{optim.gradient_accumulation_steps} accumulation x {optim.num_devices} device(s)"),
        ("epochs / steps", f"{optim.epochs:g} / {optim.max_steps if optim.max_steps else '?'}"),
        ("trainable", f"{plan.trainable_params:,} ({100 * plan.trainable_params / plan.model_params:.3f}% of "
                      f"{plan.model_params:,}, {plan.budget.convention.value} convention)"),
    ]
    if setup.extras.dpo_beta:
        rows.append(("DPO beta", f"{setup.extras.dpo_beta:g}"))
    if setup.extras.group_size:
        rows.append(("RL group size", f"{setup.extras.group_size} x {setup.extras.groups_per_batch} groups/batch"))
    for name, value in rows:
        table.add_row(name, escape(value))
    console.print(table)
    data = setup.data
    if data.trained_tokens is not None:
        mask = f", {data.loss_mask.value} loss mask" if data.loss_mask else ""
        source = f" from {escape(data.path)}" if data.path else ""
        examples = f"{data.examples:,}" if data.examples is not None else "?"
        console.print(f"data{source}: {examples} examples, "
                      f"{data.trained_tokens:,} trained tokens{mask}", highlight=False)
    console.print(capacity_bar(plan), highlight=False)
    _render_estimates(console, plan)
    if plan.memory_verdict is not None:
        console.print(f"[dim]estimates[/] {plan.memory_verdict.line()}", highlight=False)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    for note in plan.notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    if explain:
        why = Table(title="Why each number", title_justify="left")
        for col in ("field", "value", "rule", "source"):
            why.add_column(col, overflow="fold")
        for e in plan.explanations:
            value = ", ".join(e.value) if isinstance(e.value, list) else (
                fmt_number(e.value) if isinstance(e.value, float) else str(e.value))
            why.add_row(e.field, escape(value), escape(e.reason), escape(e.source))
        console.print(why)
        for label, url in references_in(e.source for e in plan.explanations):
            console.print(f"  {label}: {url}", highlight=False, soft_wrap=True)


def _render_estimates(console: Console, plan: Plan) -> None:
    mem = plan.memory
    parts = ", ".join(f"{k} {v:.1f}" for k, v in mem.weights_gib.items())
    console.print(
        f"[dim]estimates[/] memory (GiB): weights {parts}; adapter+grads+AdamW "
        f"{mem.adapter_gib + mem.adapter_grads_gib + mem.optimizer_gib:.2f}; activations "
        f"{mem.activations_checkpointed_gib:.1f} with checkpointing / {mem.activations_gib:.1f} without; "
        f"logits {mem.logits_gib:.1f}", highlight=False)
    comp = plan.compute
    hours = f", ~{comp.gpu_hours:.2f} {comp.gpu.upper()} GPU-hours at 40% MFU" if comp.gpu_hours is not None else ""
    console.print(f"[dim]estimates[/] {comp.flops_per_token_lora / 1e9:.1f} GFLOPs/token LoRA vs "
                  f"{comp.flops_per_token_full / 1e9:.1f} full fine-tuning (~2/3){hours}", highlight=False)
