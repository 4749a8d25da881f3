"""The shape cache: the second call for an architecture without a built-in layout needs no torch.

Oracle for the cached answer: the first (uncached) answer, which transformers built on the meta device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loraplan.arch import shape_cache

transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv(shape_cache.ENV_VAR, str(folder))
    return folder


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    # A layout with no torch-free builder: BLOOM, at the config class's sizes.
    path = tmp_path / "config.json"
    path.write_text(json.dumps(transformers.BloomConfig(n_layer=4).to_dict()))
    return path


def _params_in_fresh_process(config: Path, cache: Path) -> dict:
    code = (
        "import json, sys, time; t = time.perf_counter()\n"
        "from loraplan.arch import load_architecture\n"
        "from loraplan.arch.conventions import budget\n"
        f"arch = load_architecture({str(config)!r})\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'torch': 'torch' in sys.modules,\n"
        "  'source': arch.source, 'total': arch.total_params, 'per_rank': budget(arch).per_rank_total}))\n"
    )
    env = {**os.environ, shape_cache.ENV_VAR: str(cache), "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_call_reads_the_cache_without_torch(config_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _params_in_fresh_process(config_file, cache)
    second = _params_in_fresh_process(config_file, cache)
    assert first["torch"] and not second["torch"]
    assert second["source"].endswith("cached") and not first["source"].endswith("cached")
    assert (second["total"], second["per_rank"]) == (first["total"], first["per_rank"])
    assert second["seconds"] < 1.0, second


def test_corrupt_entry_is_a_miss_and_is_rewritten(cache_folder: Path, config_file: Path) -> None:
    from loraplan.arch.sources import load_architecture

    first = load_architecture(str(config_file))
    (entry,) = cache_folder.glob("*.json")
    entry.write_text('{"key": "x", "weights": [[1, 2]]')
    again = load_architecture(str(config_file))
    assert again.source == first.source and again.weights == first.weights
    assert json.loads(entry.read_text())["total_params"] == first.total_params
    assert not list(cache_folder.glob(".*.tmp"))


def test_rows_that_do_not_validate_are_a_miss(cache_folder: Path) -> None:
    key = "k" * 64
    (cache_folder / f"{key}.json").write_text(json.dumps(
        {"key": key, "total_params": 1, "weights": [["w", -1, 2, "attn", 0, 1, [], "linear"]]}))
    assert shape_cache.load(key) is None


def test_a_symlinked_entry_is_not_followed(cache_folder: Path, tmp_path: Path) -> None:
    key = "s" * 64
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"key": key, "total_params": 1, "weights": []}))
    (cache_folder / f"{key}.json").symlink_to(target)
    assert shape_cache.load(key) is None


def test_key_follows_config_content_and_library_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"model_type": "gpt_neox", "hidden_size": 64}
    base = shape_cache.cache_key(config, False)
    assert shape_cache.cache_key(dict(reversed(config.items())), False) == base  # content, not key order
    assert shape_cache.cache_key({**config, "hidden_size": 65}, False) != base
    assert shape_cache.cache_key(config, True) != base
    monkeypatch.setattr(shape_cache, "_version", lambda package: "9.9" if package == "transformers" else "1")
    assert shape_cache.cache_key(config, False) != base


def test_cache_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(shape_cache.ENV_VAR, "off")
    assert shape_cache.cache_dir() is None
    assert shape_cache.load("a" * 64) is None
    shape_cache.store("a" * 64, [], 0)  # no folder, no error
