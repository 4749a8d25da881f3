"""Check 12: configs the trainer refuses at start, simulated from the trainer's own code.

PEFT adapts a weight named by `target_parameters` (the stacked MoE experts) through `lora.ParamWrapper`, which
raises "does not work with lora_dropout != 0" (peft/tuners/lora/layer.py): dropout cannot be factored out of
B @ A applied to a parameter. That happens whenever the experts are reached as parameters: named in
`target_parameters`, added by PEFT's own MoE conversion of `all-linear` / `w1,w2,w3` / `gate_proj,...` on
transformers 5, or by Unsloth's get_moe_target_parameters. TRL's ModelConfig defaults lora_dropout to 0.05, so
such a TRL config stops before the first step; Axolotl's validator demands 0 as well.
"""

from __future__ import annotations

from loraplan.arch.model import Kind
from loraplan.doctor.context import CheckContext, number
from loraplan.doctor.findings import Finding, Severity
from loraplan.doctor.targets import PEFT_BASED

PARAM_WRAPPER_SOURCE = ("PEFT lora.ParamWrapper: \"does not work with lora_dropout != 0\" (peft/tuners/lora/layer.py, "
                        "PEFT 0.21)")


def check_startup(ctx: CheckContext) -> list[Finding]:
    if not ctx.setup.is_lora or ctx.format not in PEFT_BASED or "lora.dropout" in ctx.unresolved:
        return []
    dropout = ctx.setup.lora.dropout
    if not dropout:
        return []
    experts = _experts_as_parameters(ctx)
    if not experts:
        return []
    return [Finding(
        "dropout-with-expert-parameters", 12, Severity.ERROR,
        "the trainer will stop at start: PEFT cannot apply LoRA dropout to expert parameters",
        f"{ctx.seen('lora.dropout', shown=number(dropout))} while {experts}; PEFT wraps those experts in "
        "lora.ParamWrapper, which raises \"does not work with lora_dropout != 0\" when the model is wrapped",
        f"set {ctx.key('lora.dropout')}: 0", PARAM_WRAPPER_SOURCE, ("lora.dropout",), {"lora.dropout": 0.0})]


def _experts_as_parameters(ctx: CheckContext) -> str:
    """How the experts are reached as parameters (evidence), or "" when they are not."""
    stated = ctx.setup.lora.target_parameters
    if ctx.arch is not None and ctx.adapted is not None:
        params = [w for w, _ in ctx.adapted.adapted if w.kind is Kind.EXPERT_PARAM]
        if not params:
            return ""
        if stated:
            return f"{ctx.seen('lora.target_parameters')} adapts {len(params)} stacked expert weights"
        return (f"{ctx.seen('lora.target_modules')} reaches {len(params)} stacked expert weights of "
                f"{ctx.arch.model_id} as parameters ({ctx.adapted.how})")
    if stated:  # no model: the file itself names parameters
        return f"{ctx.seen('lora.target_parameters')} names parameters"
    return ""
