"""The `peft` convention equals what HF PEFT itself trains (PEFT on a meta-device model is the oracle)."""

from __future__ import annotations

import warnings

import pytest

from loraplan.arch.conventions import Component, budget, parse_targets, peft_spec
from loraplan.arch.sources import architecture_from_config
from tests.conftest import shrunk_config

peft = pytest.importorskip("peft")
pytest.importorskip("transformers")

MODELS = [
    "meta-llama/Llama-3.1-8B",
    "Qwen/Qwen3-8B",
    "mistralai/Mistral-7B-v0.3",
    "google/gemma-2-9b",
    "Qwen/Qwen3-30B-A3B",
    "mistralai/Mixtral-8x7B-v0.1",
    "deepseek-ai/DeepSeek-V3.1",
    "openai/gpt-oss-20b",
    "microsoft/Phi-3-mini-4k-instruct",
    "Qwen/Qwen3.5-35B-A3B",
    "moonshotai/Kimi-K2-Instruct",
]
TARGETS = [("all", True), ("all", False), ("attn", False), ("mlp", False), ("all-linear", False)]


def _peft_trainable(config: dict, target_modules, target_parameters) -> int:
    from loraplan.arch.meta import instantiate

    model = instantiate(config)
    lora = peft.LoraConfig(r=1, target_modules=target_modules, target_parameters=target_parameters or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(model, lora)
    return wrapped.get_nb_trainable_parameters()[0]


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize(("targets", "unembed"), TARGETS)
def test_peft_convention_equals_peft(model_id: str, targets: str, unembed: bool) -> None:
    config = shrunk_config(model_id, 2)
    arch = architecture_from_config(config, model_id, "test")
    ours = budget(arch, "peft", targets, unembed).per_rank_total
    comps, names = parse_targets(targets)
    spec = peft_spec(arch, comps | ({Component.UNEMBED} if unembed else frozenset()), names)
    modules = spec.target_modules if isinstance(spec.target_modules, str) else list(spec.target_modules)
    assert ours == _peft_trainable(config, modules, list(spec.target_parameters))


def test_published_oracle_llama2_7b_q_v_rank_8() -> None:
    # Research notes O8: Llama-2-7b-hf, r=8, q_proj+v_proj -> 4,194,304 trainable (PEFT print).
    from loraplan.arch import load_architecture

    arch = load_architecture("meta-llama/Llama-2-7b-hf")
    assert budget(arch, "peft", "q_proj,v_proj", unembed=False).params(8) == 4_194_304


def test_published_oracle_mixtral_mlp_names_silently_dropped() -> None:
    # Research notes O7 (transformers v4 Mixtral): q,k,v,o + gate/up/down_proj at r=256 ->
    # 218,103,808, i.e. attention only, because Mixtral's experts are not named gate/up/down_proj.
    from loraplan.arch import load_architecture

    arch = load_architecture("mistralai/Mixtral-8x7B-v0.1")
    attn_only = budget(arch, "peft", "q_proj,k_proj,v_proj,o_proj", unembed=False)
    assert attn_only.params(256) == 218_103_808


NAMED_MODELS = ["meta-llama/Llama-3.2-1B", "Qwen/Qwen3-30B-A3B", "mistralai/Mixtral-8x7B-v0.1",
                "deepseek-ai/DeepSeek-V3.1", "openai/gpt-oss-20b"]
NAME_LISTS = ["q_proj", "q_proj,v_proj", "all-linear", "q_proj,gate_proj,up_proj,down_proj", "w1,w2,w3,gate",
              "lm_head,o_proj"]


@pytest.mark.parametrize("model_id", NAMED_MODELS)
@pytest.mark.parametrize("names", NAME_LISTS)
@pytest.mark.parametrize("unembed", [None, True])
def test_peft_convention_with_module_names_is_peft_for_those_names(model_id: str, names: str, unembed) -> None:
    """Names go to target_modules as typed; lm_head only when listed or --unembed is explicit."""
    config = shrunk_config(model_id, 2)
    arch = architecture_from_config(config, model_id, "test")
    typed = names.split(",")
    try:
        modules = "all-linear" if typed == ["all-linear"] else typed
        expected = _peft_trainable(config, modules, None)
    except ValueError:  # PEFT: no target matched (e.g. Mixtral names on Llama)
        pytest.skip(f"PEFT itself rejects {names} on {model_id}")
    if unembed and "lm_head" not in typed:
        expected += _peft_trainable(config, ["lm_head"], None)
    result = budget(arch, "peft", names, unembed)
    assert result.per_rank_total == expected
    assert result.unembed == (bool(unembed) or "lm_head" in typed)


def test_llama_q_proj_alone_is_what_peft_prints() -> None:
    # PEFT: LoraConfig(r=8, target_modules=["q_proj"]) on Llama-3.2-1B -> 16 layers x 8 x (2048 + 2048).
    from loraplan.arch import load_architecture

    arch = load_architecture("meta-llama/Llama-3.2-1B")
    assert budget(arch, "peft", "q_proj").params(8) == 524_288
    assert budget(arch, "peft", "all-linear", unembed=True).unembed


@pytest.mark.parametrize("model_id", ["Qwen/Qwen3-30B-A3B", "meta-llama/Llama-3.2-1B"])
def test_all_linear_with_lm_head_is_written_as_the_names_peft_resolves(model_id: str) -> None:
    """PEFT cannot take `all-linear` and `lm_head` together; the written list must train what both would."""
    config = shrunk_config(model_id, 2)
    arch = architecture_from_config(config, model_id, "test")
    spec = peft_spec(arch, frozenset({Component.UNEMBED}), ["all-linear"])
    assert "lm_head" in spec.target_modules
    written = _peft_trainable(config, list(spec.target_modules), list(spec.target_parameters))
    assert written == _peft_trainable(config, "all-linear", None) + _peft_trainable(config, ["lm_head"], None)
    assert budget(arch, "peft", "all-linear", unembed=True).per_rank_total == written
