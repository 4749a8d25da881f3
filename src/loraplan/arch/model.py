"""The Architecture: what a model is made of, as far as LoRA cares.

Every 2-D weight appears once with its module name, its (out, in) shape and its role. Stacked
MoE expert tensors appear once with `num_experts` > 1 rather than E times, so a 256-expert model
stays a few thousand entries. Fused projections (`qkv_proj`, `gate_up_proj`) keep their real
shape and list the logical matrices they hold in `parts`, because conventions disagree on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """What a weight does; conventions decide from the role which weights get LoRA."""

    ATTN = "attn"  # softmax or linear attention (Gated DeltaNet) projections
    MIXER = "mixer"  # state-space sequence mixers (Mamba in_proj, x_proj, dt_proj, out_proj)
    MLP = "mlp"
    EXPERT = "expert"
    SHARED_EXPERT = "shared_expert"
    ROUTER = "router"
    EMBED = "embed"
    UNEMBED = "unembed"
    OTHER = "other"


# Expert matrices by the side their outer (hidden or latent) dimension is on: the input of the
# up-projections, the output of the down-projections. Tinker shares the LoRA factor on that side.
EXPERT_INPUT_SIDE_LEAVES = frozenset({"gate_up_proj", "w13", "up_proj", "gate_proj", "w1", "w3"})
EXPERT_OUTPUT_SIDE_LEAVES = frozenset({"down_proj", "w2"})


class Kind(StrEnum):
    """How the weight is held in the transformers model, which decides what PEFT can target."""

    LINEAR = "linear"  # an nn.Linear module: `all-linear` and module names reach it
    EXPERT_PARAM = "expert_param"  # a 3-D nn.Parameter (experts, a, b): only `target_parameters`
    ROUTER_PARAM = "router_param"  # a router held as a bare weight in a custom module
    EMBEDDING = "embedding"  # nn.Embedding


@dataclass(frozen=True, slots=True)
class Weight:
    """One weight matrix (or one stack of identical expert matrices).

    name: module path as transformers names it, e.g. `model.layers.0.self_attn.q_proj`.
    in_features, out_features: the matrix is (out, in); LoRA at rank r costs r*(in+out).
    role: see Role.
    layer: decoder layer index, None outside the layer stack.
    num_experts: E for a stacked expert tensor, 1 otherwise.
    parts: out-sizes of the logical matrices a fused weight holds (sum == out_features);
        empty for an unfused weight.
    kind: how transformers holds it (see Kind).
    """

    name: str
    in_features: int
    out_features: int
    role: Role
    layer: int | None = None
    num_experts: int = 1
    parts: tuple[int, ...] = ()
    kind: Kind = Kind.LINEAR

    @property
    def leaf(self) -> str:
        """Last component of the name (`q_proj`), the form target_modules lists use."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def numel(self) -> int:
        """Parameters in the weight itself (all experts of a stack)."""
        return self.in_features * self.out_features * self.num_experts

    @property
    def logical_outs(self) -> tuple[int, ...]:
        """Out-sizes of the separate matrices this weight stands for."""
        return self.parts or (self.out_features,)


@dataclass(frozen=True)
class Architecture:
    """A model as LoRA sees it: its weights and the config facts the rules need.

    family: the LR family (`llama`, `qwen`, `mistral`, `deepseek`, ...), from model_type and
        architectures, not from the name alone.
    hidden_size: of the language model (text_config for VL and Qwen3.5 configs).
    total_params / active_params: all parameters / those a token passes through (MoE top-k).
    source: where the facts came from (`catalogue`, `local config`, `safetensors headers`,
        `hub`, `meta device`), shown in explanations.
    """

    model_id: str
    model_type: str
    family: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    weights: tuple[Weight, ...]
    total_params: int
    active_params: int
    tie_word_embeddings: bool = False
    num_experts: int = 0
    experts_per_token: int = 0
    num_shared_experts: int = 0
    attention_type: str = "gqa"
    architectures: tuple[str, ...] = ()
    source: str = "config"
    notes: tuple[str, ...] = field(default=())

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def by_role(self, *roles: Role) -> list[Weight]:
        return [w for w in self.weights if w.role in roles]

    @property
    def module_leaves(self) -> list[str]:
        """Distinct leaf names in model order: what a `target_modules` list can name."""
        seen: dict[str, None] = {}
        for w in self.weights:
            seen.setdefault(w.leaf, None)
        return list(seen)
