"""Our torch-free builders against transformers itself on the meta device, for every catalogue config."""

from __future__ import annotations

import pytest

from loraplan.arch.builders import build_from_config
from loraplan.arch.meta import build_on_meta
from loraplan.arch.sources import catalog
from tests.conftest import shrunk_config

pytest.importorskip("transformers")
pytest.importorskip("torch")

MODELS = sorted(entry.model_id for entry in catalog().values())


def _signature(arch):
    """The language model's weights; vision towers (role other) are outside our builders' scope."""
    return sorted((w.name.replace("model.language_model.", "model."), w.in_features, w.out_features,
                   w.num_experts, w.role.value) for w in arch.weights if w.role.value != "other")


@pytest.mark.parametrize("model_id", MODELS)
def test_builder_matches_meta_device(model_id: str) -> None:
    config = shrunk_config(model_id, 2)
    ours = build_from_config(config, model_id, "test")
    theirs = build_on_meta(config, model_id, use_cache=False)
    assert _signature(ours) == _signature(theirs)
    if "vision_config" not in config:
        assert ours.total_params == theirs.total_params
    assert (ours.hidden_size, ours.family) == (theirs.hidden_size, theirs.family)


def test_kimi_is_read_through_the_deepseek_class_without_remote_code() -> None:
    config = shrunk_config("moonshotai/Kimi-K2-Instruct", 2)
    arch = build_on_meta(config, "moonshotai/Kimi-K2-Instruct", use_cache=False)
    assert arch.family == "kimi" and arch.hidden_size == 7168
    assert any(w.leaf == "kv_a_proj_with_mqa" for w in arch.weights)
