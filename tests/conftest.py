"""Shared fixtures: catalogue configs shrunk to a few layers, so meta-device oracles stay fast."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from loraplan.arch.sources import catalog, load_config_file


def catalogue_config(model_id: str) -> dict[str, Any]:
    return load_config_file(catalog()[model_id.lower()].path)


def shrunk_config(model_id: str, layers: int = 2) -> dict[str, Any]:
    """A catalogue config with `layers` decoder layers (enough to include a MoE layer)."""
    config = copy.deepcopy(catalogue_config(model_id))
    config.pop("quantization_config", None)
    text = config.get("text_config", config)
    first_dense = text.get("first_k_dense_replace", 0)
    text["num_hidden_layers"] = max(layers, first_dense + 1)
    if "layer_types" in text:
        text["layer_types"] = text["layer_types"][: text["num_hidden_layers"]]
        if "full_attention" not in text["layer_types"]:
            text["layer_types"][-1] = "full_attention"
    return config


@pytest.fixture
def tiny_llama_config() -> dict[str, Any]:
    return shrunk_config("meta-llama/Llama-3.2-1B", 2)


@pytest.fixture(autouse=True, scope="session")
def _isolated_shape_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or fill the user's shape cache (loraplan.arch.shape_cache)."""
    import os

    os.environ["LORAPLAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("shape-cache"))
