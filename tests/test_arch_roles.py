"""Every linear weight has a role; fused q/k/v split for Tinker; an unknown weight is an error naming it.

Layouts come from transformers itself: its config classes at their documented checkpoints' sizes
(Falcon-7B, GPT-NeoX-20B, Jamba-v0.1), the model built on the meta device. Expected Tinker costs are
derived from those configs, one logical matrix at a time: r * (in + out).
"""

from __future__ import annotations

import pytest

from loraplan.arch.conventions import budget
from loraplan.arch.from_weights import architecture_from_weights, weights_from_shapes
from loraplan.arch.model import Kind, Role
from loraplan.errors import UnsupportedModelError

transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")


def _meta(config_class: str, layers: int, **fields):
    from loraplan.arch.meta import build_on_meta

    config = getattr(transformers, config_class)(num_hidden_layers=layers, **fields).to_dict()
    return config, build_on_meta(config, config_class, use_cache=False)


def test_falcon_self_attention_is_attention_and_query_key_value_splits() -> None:
    config, arch = _meta("FalconConfig", 2)  # tiiuae/falcon-7b: 71 query heads, one shared k/v head
    hidden, head_dim = config["hidden_size"], config["hidden_size"] // config["num_attention_heads"]
    assert {w.role for w in arch.weights if ".self_attention." in w.name} == {Role.ATTN}
    per_layer = (hidden + hidden) + 2 * (hidden + head_dim) + (hidden + hidden)  # q, k, v, dense
    assert budget(arch, "tinker", "attn", unembed=False).per_rank_total == 2 * per_layer
    assert budget(arch, "peft", "attn", unembed=False).per_rank_total == 2 * (hidden + hidden + 2 * head_dim
                                                                               + 2 * hidden)


def test_gpt_neox_fused_query_key_value_is_three_matrices_for_tinker() -> None:
    config, arch = _meta("GPTNeoXConfig", 2)  # EleutherAI/gpt-neox-20b (Pythia's layout)
    hidden = config["hidden_size"]
    assert next(w for w in arch.weights if w.role is Role.EMBED).name.endswith("embed_in")
    fused = next(w for w in arch.weights if w.leaf == "query_key_value")
    assert fused.parts == (hidden, hidden, hidden)
    assert budget(arch, "tinker", "attn", unembed=False).per_rank_total == 2 * (3 * 2 * hidden + 2 * hidden)


def test_jamba_mamba_projections_are_mixers_and_adapted() -> None:
    _, arch = _meta("JambaConfig", 8)  # ai21labs/Jamba-v0.1: attention every 8th layer, Mamba elsewhere
    mixers = {w.leaf for w in arch.weights if w.role is Role.MIXER}
    assert mixers == {"in_proj", "x_proj", "dt_proj", "out_proj"}
    linear = {w.name for w in arch.weights if w.kind is Kind.LINEAR and w.role not in (Role.ROUTER, Role.EMBED)}
    adapted = {name for name, _ in budget(arch, "tinker").adapted}
    assert linear <= adapted  # "every linear weight" means the Mamba projections too


def test_a_weight_without_a_role_is_named() -> None:
    config = {"model_type": "mystery", "hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 16}
    shapes = {"model.layers.0.self_attn.q_proj.weight": (8, 8), "model.layers.0.blender.mix.weight": (8, 8)}
    with pytest.raises(UnsupportedModelError, match=r"`model\.layers\.0\.blender\.mix` \(8 x 8\) has no known role"):
        architecture_from_weights(config, weights_from_shapes(shapes, config), 128, "mystery", "test")


def test_vision_towers_stay_outside_without_error() -> None:
    config = {"model_type": "mystery", "hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 16}
    shapes = {"model.layers.0.self_attn.q_proj.weight": (8, 8), "model.visual.blocks.0.fc.weight": (8, 8)}
    arch = architecture_from_weights(config, weights_from_shapes(shapes, config), 128, "mystery", "test")
    assert {w.role for w in arch.weights} == {Role.ATTN, Role.OTHER}


@pytest.mark.parametrize(("config_class", "fields"), [
    ("NemotronHConfig", {}),  # `mixer` is Mamba-2, attention, MLP or MoE by layer
    ("FalconH1Config", {"num_hidden_layers": 2}),  # attention and Mamba-2 side by side
    ("FalconMambaConfig", {"num_hidden_layers": 2}),
    ("MptConfig", {"n_layers": 2}),  # fused Wqkv, d_model / n_heads
    ("BloomConfig", {"n_layer": 2}),
])
def test_hybrid_and_older_layouts_give_every_linear_weight_a_role(config_class: str, fields: dict) -> None:
    from loraplan.arch.meta import build_on_meta

    config = getattr(transformers, config_class)(**fields).to_dict()
    arch = build_on_meta(config, config_class, use_cache=False)  # require_roles raises on a weight without one
    linear = {w.name for w in arch.weights if w.kind is Kind.LINEAR and w.role not in (Role.ROUTER, Role.EMBED)}
    assert linear and linear <= {name for name, _ in budget(arch).adapted}
    fused = [w for w in arch.weights if w.leaf in ("Wqkv", "query_key_value")]
    assert all(len(w.parts) == 3 for w in fused)
