"""Weight name -> role, for architectures read from tensors or modules rather than built by us.

Every linear weight of a language model has a role; conventions decide from it what gets LoRA.
A weight no pattern knows is an error naming the weight (`require_roles`), never a silent
"other" that no convention adapts while `plan` says "every linear weight".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from loraplan.arch.model import Kind, Role, Weight
from loraplan.errors import UnsupportedModelError

# Sequence-mixer blocks whose parent name does not say what the projection is (Nemotron-H's
# `mixer` is attention, Mamba-2, MLP or MoE by layer): the leaf decides.
_MIXER_PARENTS = r"(mamba|mixer|ssm)"
_MAMBA_LEAVES = r"(in_proj|x_proj|dt_proj|out_proj)"

# Order matters: the first pattern that matches a dotted name wins.
_ROLE_PATTERNS: tuple[tuple[Role, re.Pattern[str]], ...] = tuple(
    (role, re.compile(pattern))
    for role, pattern in (
        (Role.EMBED, r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings|embed_in|embeddings)$"),
        (Role.UNEMBED, r"(^|\.)(lm_head|output|embed_out)$"),
        (Role.SHARED_EXPERT, r"\.shared_experts?\.[^.]+$"),
        (Role.ROUTER, r"\.(gate|router|shared_expert_gate)$"),
        (Role.EXPERT, r"\.experts(\.\d+)?\.[^.]+$"),
        (Role.MIXER, rf"\.{_MIXER_PARENTS}\.{_MAMBA_LEAVES}$"),
        (Role.ATTN, rf"\.{_MIXER_PARENTS}\.(q_proj|k_proj|v_proj|o_proj)$"),
        (Role.MLP, rf"\.{_MIXER_PARENTS}\.(up_proj|down_proj|gate_proj|fc1_latent_proj|fc2_latent_proj)$"),
        (Role.ATTN, r"\.(self_attn|self_attention|attention|attn|linear_attn|cross_attn)\.[^.]+$"),
        (Role.MLP, r"\.(mlp|feed_forward|ffn)\.[^.]+$"),
    )
)

VISION_MARKERS = ("visual", "vision", "image", "audio", "mm_projector", "multi_modal")


def role_of(name: str) -> Role:
    """The role of a weight from its dotted module name; vision towers and unknown names are OTHER."""
    if is_outside_language_model(name):
        return Role.OTHER
    for role, pattern in _ROLE_PATTERNS:
        if pattern.search(name):
            return role
    return Role.OTHER


def is_outside_language_model(name: str) -> bool:
    """Vision and audio towers and their projectors: not part of the text model's LoRA budget."""
    return any(marker in name for marker in VISION_MARKERS)


def require_roles(weights: Iterable[Weight], model_id: str) -> None:
    """Fail on the first language-model linear weight without a role, naming it."""
    for weight in weights:
        if weight.role is Role.OTHER and weight.kind is Kind.LINEAR and not is_outside_language_model(weight.name):
            raise UnsupportedModelError(
                f"{model_id}: weight `{weight.name}` ({weight.out_features} x {weight.in_features}) has no known "
                "role (attention, MLP, experts, state-space mixer, router, unembedding), so no convention can say "
                "whether it is adapted; please report this architecture"
            )
