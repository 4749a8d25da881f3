"""Checks 7, 8 and 10: how the adapter is scaled and initialised, and variants the rules never measured.

- rsLoRA scales by alpha/sqrt(r), which blows up below rank 8 (rsLoRA, Kalajdzievski 2023).
- alpha/r >= 4 with an LR above 3e-4 makes the adapter norm explode early (a rank-and-alpha rule of thumb).
- alpha tied to rank (alpha = r or 2r) makes the optimal LR depend on rank again (LoRA Without Regret: the
  rules assume a fixed alpha, 32 in Tinker, with alpha/r scaling).
- B must start at zero so training starts from the base model (LoRA Without Regret: "critical for stable start").
"""

from __future__ import annotations

import math

from loraplan.doctor.context import CheckContext
from loraplan.doctor.defaults import TRL_MODEL_SRC
from loraplan.doctor.findings import Finding, Severity
from loraplan.rules.methods import DEFAULT_ALPHA, RSLORA_MIN_RANK
from loraplan.rules.sources import SEED_ARTICLE, SEED_DOCTRINE, SEED_RANK_ALPHA, SEED_RULES

HIGH_SCALE = 4.0  # alpha/r at or above this ...
HIGH_LR = 3e-4  # ... with an LR above this is unstable (rank-and-alpha rule of thumb: the adapter norm explodes)
ZERO_B_INITS = frozenset({"true", "gaussian"})  # PEFT initialisations that keep B = 0
VARIANT_NOTE = f"{SEED_ARTICLE}: the findings primarily apply to standard LoRA (variants such as PiSSA untested)"


def check_adapter(ctx: CheckContext) -> list[Finding]:
    out: list[Finding] = []
    ignored = _lora_ignored(ctx)
    if ignored is not None:
        return [ignored]
    if not ctx.setup.is_lora:
        return out
    lora = ctx.setup.lora
    if lora.use_rslora and lora.rank is not None and lora.rank < RSLORA_MIN_RANK:
        alpha = lora.alpha if lora.alpha is not None else DEFAULT_ALPHA
        out.append(Finding(
            "rslora-low-rank", 7, Severity.WARNING, f"rsLoRA at rank {lora.rank} (below {RSLORA_MIN_RANK})",
            f"{ctx.seen('lora.use_rslora')} with {ctx.seen('lora.rank')}: the scale alpha/sqrt(r) = "
            f"{alpha / math.sqrt(lora.rank):.1f} is too aggressive at small ranks",
            f"set {ctx.key('lora.use_rslora')}: false (standard alpha/r scaling) below rank {RSLORA_MIN_RANK}",
            SEED_RANK_ALPHA, ("lora.use_rslora",), {"lora.use_rslora": False}))
    scale, lr = lora.scale, ctx.setup.optim.learning_rate
    if scale is not None and lr is not None and scale >= HIGH_SCALE and lr > HIGH_LR and lora.rank:
        alpha = DEFAULT_ALPHA if DEFAULT_ALPHA / _divisor(ctx) < HIGH_SCALE else round(_divisor(ctx), 2)
        out.append(Finding(
            "high-scale-high-lr", 7, Severity.WARNING, f"adapter scale {scale:g} with LR {lr:g}: unstable",
            f"{ctx.seen('lora.alpha')} and {ctx.seen('lora.rank')} give a scale of {scale:g} "
            f"({'alpha/sqrt(r)' if lora.use_rslora else 'alpha/r'}) together with {ctx.seen('optim.learning_rate')}; "
            f"a scale >= {HIGH_SCALE:g} above LR {HIGH_LR:g} often makes the adapter norm explode in the first "
            "few hundred steps", f"set {ctx.key('lora.alpha')}: {alpha:g} (or lower the LR to {HIGH_LR:g})",
            SEED_RANK_ALPHA, ("lora.alpha",), {"lora.alpha": alpha}))
    if lora.alpha is not None and lora.rank and lora.alpha != DEFAULT_ALPHA and lora.alpha in (lora.rank,
                                                                                                2 * lora.rank):
        times = "" if lora.alpha == lora.rank else "2 x "
        out.append(Finding(
            "alpha-scales-with-rank", 8, Severity.INFO, f"alpha tied to rank (alpha = {times}r)",
            f"{ctx.seen('lora.alpha')} = {times}{ctx.seen('lora.rank')}: if alpha follows the rank across runs, the "
            "optimal LR changes with rank, and an LR tuned at one rank does not carry over",
            f"keep {ctx.key('lora.alpha')}: {DEFAULT_ALPHA:g} fixed for every rank (alpha/r scaling then keeps the "
            "optimal LR independent of rank)", SEED_RULES, ("lora.alpha",)))
    out.extend(_init_and_variants(ctx))
    return out


def _divisor(ctx: CheckContext) -> float:
    rank = ctx.setup.lora.rank or 1
    return math.sqrt(rank) if ctx.setup.lora.use_rslora else float(rank)


def _init_and_variants(ctx: CheckContext) -> list[Finding]:
    lora = ctx.setup.lora
    out: list[Finding] = []
    init = lora.init_lora_weights
    if init is False or (isinstance(init, str) and init.lower() == "false"):
        out.append(Finding(
            "b-not-zero", 10, Severity.ERROR, "LoRA B is not initialised to zero",
            f"{ctx.seen('lora.init_lora_weights')}: B starts random, so training starts from a perturbed model "
            "instead of the base model", f"set {ctx.key('lora.init_lora_weights')}: true (A random, B zero)",
            f"{SEED_DOCTRINE}: init_B zero, critical for a stable start; PEFT LoraConfig.init_lora_weights",
            ("lora.init_lora_weights",), {"lora.init_lora_weights": True}))
    elif isinstance(init, str) and init.lower() not in ZERO_B_INITS:
        out.append(Finding(
            "lora-variant", 10, Severity.INFO, f"LoRA variant `{init}`: the rules were measured on standard LoRA",
            f"{ctx.seen('lora.init_lora_weights')} changes the initialisation (and, for PiSSA-like methods, the "
            "base weights)", "expect the LR and rank rules to need a check on a short run", VARIANT_NOTE,
            ("lora.init_lora_weights",)))
    if lora.use_dora:
        out.append(Finding(
            "lora-variant", 10, Severity.INFO, "DoRA: the rules were measured on standard LoRA",
            f"{ctx.seen('lora.use_dora')}", "expect the LR and rank rules to need a check on a short run",
            VARIANT_NOTE, ("lora.use_dora",)))
    if lora.loraplus_lr_ratio:
        lr = ctx.setup.optim.learning_rate
        b_lr = f" (B trains at {lr * lora.loraplus_lr_ratio:.3g})" if lr else ""
        out.append(Finding(
            "lora-variant", 10, Severity.INFO, f"LoRA+: B's learning rate is {lora.loraplus_lr_ratio:g}x the LR",
            f"{ctx.key('lora.loraplus_lr_ratio')} = {lora.loraplus_lr_ratio:g}{b_lr}; the LR rules were measured on "
            "plain LoRA, where A and B share one LR, so the recommended LR applies to A only",
            "expect the LR rule to need a check on a short run (or drop LoRA+ to follow the rules as measured)",
            f"{VARIANT_NOTE}; LoRA+ (Hayou et al. 2024, https://arxiv.org/abs/2402.12354)",
            ("lora.loraplus_lr_ratio",)))
    if lora.variants:
        out.append(Finding(
            "lora-variant", 10, Severity.INFO, "a LoRA variant: the rules were measured on standard LoRA",
            "; ".join(lora.variants), "expect the LR and rank rules to need a check on a short run", VARIANT_NOTE,
            ("lora.variants",)))
    saved = lora.modules_to_save or ()
    if any(name.split(".")[-1] in ("lm_head", "embed_tokens") for name in saved):
        out.append(Finding(
            "modules-trained-fully", 10, Severity.INFO,
            f"{', '.join(saved)} trained fully next to the adapter",
            f"{ctx.key('lora.modules_to_save')} = [{', '.join(saved)}]: these weights get full fine-tuning (every "
            "parameter, saved whole with the adapter), at the LoRA learning rate",
            "fine if intended (new tokens); otherwise adapt lm_head with LoRA in the target list instead",
            "PEFT LoraConfig.modules_to_save (peft/tuners/lora/config.py)", ("lora.modules_to_save",)))
    if lora.dropout:
        out.append(Finding(
            "lora-dropout", 10, Severity.INFO, f"LoRA dropout {lora.dropout:g}",
            f"{ctx.seen('lora.dropout')}; the rules were measured without dropout",
            f"{ctx.key('lora.dropout')}: 0 unless you see overfitting", f"{SEED_DOCTRINE}: default config dropout 0.0",
            ("lora.dropout",)))
    return out


def _lora_ignored(ctx: CheckContext) -> Finding | None:
    """TRL trains every weight unless use_peft is true, whatever lora_* says."""
    stated = ctx.stated.lora
    if ctx.format != "trl" or ctx.setup.is_lora or (stated.rank is None and stated.target_modules is None):
        return None
    return Finding(
        "lora-settings-ignored", 10, Severity.ERROR, "LoRA settings are present but TRL will fine-tune every weight",
        f"{'lora_r' if stated.rank is not None else 'lora_target_modules'} is set but use_peft is not true; "
        "ModelConfig.use_peft defaults to false, so the lora_* settings are ignored",
        "set use_peft: true", TRL_MODEL_SRC, ("finetuning",), {"finetuning": "lora"})
