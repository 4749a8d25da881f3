"""Model references: folders with safetensors headers, config files, the hub (through its HTTP seam)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from loraplan.arch import load_architecture
from loraplan.arch.conventions import budget
from loraplan.errors import ConfigError, LoraplanError, ModelNotFoundError
from tests.conftest import catalogue_config, shrunk_config


def write_safetensors_header(path: Path, tensors: dict[str, list[int]], declared: int | None = None) -> None:
    """A safetensors file holding only its header (offsets are never read)."""
    header = {name: {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]} for name, shape in tensors.items()}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", declared if declared is not None else len(raw)) + raw)


def llama_tensors(config: dict) -> dict[str, list[int]]:
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    hd = h // heads
    tensors = {"model.embed_tokens.weight": [v, h], "model.norm.weight": [h], "lm_head.weight": [v, h]}
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}"
        tensors |= {f"{p}.self_attn.q_proj.weight": [heads * hd, h], f"{p}.self_attn.k_proj.weight": [kv * hd, h],
                    f"{p}.self_attn.v_proj.weight": [kv * hd, h], f"{p}.self_attn.o_proj.weight": [h, heads * hd],
                    f"{p}.mlp.gate_proj.weight": [i, h], f"{p}.mlp.up_proj.weight": [i, h],
                    f"{p}.mlp.down_proj.weight": [h, i], f"{p}.input_layernorm.weight": [h],
                    f"{p}.post_attention_layernorm.weight": [h]}
    return tensors


def test_local_folder_reads_exact_totals_from_headers(tmp_path: Path) -> None:
    config = shrunk_config("meta-llama/Llama-3.1-8B", 2)
    (tmp_path / "config.json").write_text(json.dumps(config))
    tensors = llama_tensors(config)
    write_safetensors_header(tmp_path / "model.safetensors", tensors)
    arch = load_architecture(str(tmp_path))
    expected_total = sum(int(__import__("math").prod(s)) for s in tensors.values())
    assert arch.total_params == expected_total
    assert "safetensors" in arch.source


def test_unknown_model_type_is_read_from_tensor_names(tmp_path: Path) -> None:
    config = shrunk_config("meta-llama/Llama-3.1-8B", 2)
    config["model_type"] = "my_private_llama"
    config["architectures"] = ["MyPrivateLlamaForCausalLM"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_safetensors_header(tmp_path / "model.safetensors", llama_tensors(config))
    arch = load_architecture(str(tmp_path))
    # Same per-rank count as the built-in Llama layout for the same shapes.
    reference = load_architecture(str(_config_file(tmp_path, shrunk_config("meta-llama/Llama-3.1-8B", 2))))
    assert budget(arch).per_rank_total == budget(reference).per_rank_total


def _config_file(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(config))
    return path


def test_per_expert_tensors_are_grouped_into_stacks(tmp_path: Path) -> None:
    config = {"model_type": "unknown_moe", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 100,
              "num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 32}
    tensors = {"model.embed_tokens.weight": [100, 64], "lm_head.weight": [100, 64],
               "model.layers.0.self_attn.q_proj.weight": [64, 64], "model.layers.0.mlp.gate.weight": [4, 64]}
    for e in range(4):
        tensors |= {f"model.layers.0.mlp.experts.{e}.w1.weight": [32, 64],
                    f"model.layers.0.mlp.experts.{e}.w2.weight": [64, 32]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_safetensors_header(tmp_path / "model.safetensors", tensors)
    arch = load_architecture(str(tmp_path))
    # shared-outer: per matrix hidden + E * 32; two matrices.
    assert budget(arch, targets="experts", unembed=False).per_rank_total == 2 * (64 + 4 * 32)
    assert budget(arch, "per-expert", targets="experts", unembed=False).per_rank_total == 2 * 4 * (64 + 32)


def test_header_length_over_100mb_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(catalogue_config("meta-llama/Llama-3.2-1B")))
    write_safetensors_header(tmp_path / "model.safetensors", {"a": [1]}, declared=200 * 1024 * 1024)
    with pytest.raises(ConfigError, match="100 MB"):
        load_architecture(str(tmp_path))


def test_header_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(catalogue_config("meta-llama/Llama-3.2-1B")))
    raw = b"[1, 2, 3]"
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_architecture(str(tmp_path))


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "invalid JSON"), ("[1]", "JSON object"), ('{"model_type": "llama"}', "hidden_size"),
    ('{"model_type": "llama", "hidden_size": "big"}', "integer"),
])
def test_malformed_config_gives_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(LoraplanError, match=message):
        load_architecture(str(path))


def test_text_config_hidden_size_is_the_language_models() -> None:
    arch = load_architecture("Qwen/Qwen3-VL-30B-A3B-Instruct")
    assert arch.hidden_size == 2048 and arch.num_experts == 128


def test_unknown_reference_is_one_sentence() -> None:
    with pytest.raises(ModelNotFoundError, match="not a folder"):
        load_architecture("no-such-model")


class _FakeHub:
    """Stands in for huggingface_hub's two network calls; the translation of its errors is ours."""

    def __init__(self, tmp_path: Path, error: Exception | None = None) -> None:
        self.tmp_path, self.error = tmp_path, error

    def hf_hub_download(self, repo_id, filename, revision=None, token=None):
        if self.error is not None:
            raise self.error
        path = self.tmp_path / "config.json"
        path.write_text(json.dumps(catalogue_config("Qwen/Qwen3-8B")))
        return str(path)

    def get_safetensors_metadata(self, repo_id, revision=None, token=None):
        from huggingface_hub.errors import NotASafetensorsRepoError

        raise NotASafetensorsRepoError("no safetensors")


def _patch_hub(monkeypatch, fake: _FakeHub) -> None:
    import huggingface_hub

    from loraplan.arch import sources

    monkeypatch.setattr(sources, "hub_reachable", lambda timeout_s=3.0: True)  # the fake answers, not the network
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", fake.get_safetensors_metadata)


def test_hub_reference_reads_config(monkeypatch, tmp_path: Path) -> None:
    _patch_hub(monkeypatch, _FakeHub(tmp_path))
    arch = load_architecture("someone/qwen3-8b-finetune")
    assert arch.source == "hub" and arch.hidden_size == 4096


def _http_error(cls, message: str):
    from huggingface_hub import errors

    response_cls = errors.Response  # whichever HTTP library this huggingface_hub builds its errors on
    request_cls = __import__(response_cls.__module__.split(".")[0]).Request
    response = response_cls(401, request=request_cls("GET", "https://example.invalid/config.json"))
    return cls(message, response=response)


@pytest.mark.parametrize(("error_name", "message"), [
    ("GatedRepoError", "gated"), ("RepositoryNotFoundError", "no such model"),
])
def test_hub_errors_become_one_sentence(monkeypatch, tmp_path: Path, error_name: str, message: str) -> None:
    from huggingface_hub import errors

    _patch_hub(monkeypatch, _FakeHub(tmp_path, _http_error(getattr(errors, error_name), "boom")))
    with pytest.raises(ModelNotFoundError, match=message):
        load_architecture("someone/private-model")


def test_offline_hub_says_so(monkeypatch, tmp_path: Path) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    _patch_hub(monkeypatch, _FakeHub(tmp_path, LocalEntryNotFoundError("offline")))
    with pytest.raises(ModelNotFoundError, match="offline"):
        load_architecture("someone/model")


# Offline resolution of variants and re-uploads; failing fast when the hub is out of reach ----------------------


@pytest.mark.parametrize(("reference", "answered_by"), [
    ("unsloth/Llama-3.1-8B", "meta-llama/Llama-3.1-8B"),  # a mirror: the same name elsewhere
    ("NousResearch/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"),
    ("nvidia/Qwen3-30B-A3B-NVFP4", "Qwen/Qwen3-30B-A3B"),  # quantised upload
    ("unsloth/mistral-7b-instruct-v0.3-bnb-4bit", "mistralai/Mistral-7B-v0.3"),
    ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B"),  # dated instruct release
    ("Qwen/Qwen3.5-35B-A3B-Base", "Qwen/Qwen3.5-35B-A3B"),
    ("unsloth/gpt-oss-20b", "openai/gpt-oss-20b"),
    ("someone/Qwen3-8B-AWQ", "Qwen/Qwen3-8B"),
])
def test_variants_and_reuploads_resolve_offline_to_the_catalogue(monkeypatch, reference: str,
                                                                 answered_by: str) -> None:
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    arch = load_architecture(reference)
    assert arch.model_id == answered_by
    assert answered_by in arch.source and reference in arch.source  # says which entry answered, for what


def test_a_variant_has_the_catalogued_architecture() -> None:
    base, variant = load_architecture("Qwen/Qwen3-30B-A3B"), load_architecture("nvidia/Qwen3-30B-A3B-NVFP4")
    assert (variant.hidden_size, variant.num_experts, variant.total_params) == (
        base.hidden_size, base.num_experts, base.total_params)


@pytest.mark.parametrize("reference", ["meta-llama/Meta-Llama-3-8B-Instruct", "unsloth/gemma-3-4b-it"])
def test_a_different_model_is_not_taken_for_a_variant(reference: str) -> None:
    from loraplan.arch.sources import catalog_variant

    assert catalog_variant(reference) is None  # Llama 3 is not Llama 3.1; Gemma 3 4B is not Gemma 3 1B


def test_an_unreachable_hub_fails_in_seconds_with_one_line(tmp_path: Path) -> None:
    """Through the console script, without HF_HUB_OFFLINE, against an endpoint nothing listens on."""
    import os
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy",
                                                                     "ALL_PROXY", "all_proxy"))}
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    for command in (["params", "someone/unlisted-model"], ["lr", "someone/unlisted-model"]):
        start = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "loraplan", *command], env=env, capture_output=True,
                                text=True, timeout=60)
        elapsed = time.monotonic() - start
        assert result.returncode == 2, result.stderr
        assert elapsed < 10, f"{command}: {elapsed:.1f}s"
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "HF_HUB_OFFLINE=1" in lines[0] and "--model" in lines[0], result.stderr
