"""Weight name -> role, for architectures read from tensors or modules rather than built by us."""

from __future__ import annotations

import re

from loraplan.arch.model import Role

# Order matters: the first pattern that matches a dotted name wins.
_ROLE_PATTERNS: tuple[tuple[Role, re.Pattern[str]], ...] = tuple(
    (role, re.compile(pattern))
    for role, pattern in (
        (Role.EMBED, r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)$"),
        (Role.UNEMBED, r"(^|\.)(lm_head|output|embed_out)$"),
        (Role.SHARED_EXPERT, r"\.shared_experts?\.[^.]+$"),
        (Role.ROUTER, r"\.(gate|router|shared_expert_gate)$"),
        (Role.EXPERT, r"\.experts(\.\d+)?\.[^.]+$"),
        (Role.ATTN, r"\.(self_attn|attention|attn|linear_attn|mixer)\.[^.]+$"),
        (Role.MLP, r"\.(mlp|feed_forward|ffn)\.[^.]+$"),
    )
)

VISION_MARKERS = ("visual", "vision", "image", "audio", "mm_projector", "multi_modal")


def role_of(name: str) -> Role:
    """The role of a weight from its dotted module name; vision towers count as other."""
    if any(marker in name for marker in VISION_MARKERS):
        return Role.OTHER
    for role, pattern in _ROLE_PATTERNS:
        if pattern.search(name):
            return role
    return Role.OTHER
