"""PEFT's MoE conversion table: the shipped snapshot against the installed PEFT/transformers.

Oracle: the installed libraries themselves (peft.utils.transformers_weight_conversion, which imports
transformers' `_MODEL_TO_CONVERSION_PATTERN`), and PEFT's own trainable count on a meta-device model.
"""

from __future__ import annotations

import pytest

from loraplan.arch import moe_conversion
from loraplan.arch.conventions import budget
from loraplan.arch.sources import architecture_from_config


def test_snapshot_matches_the_installed_libraries() -> None:
    pytest.importorskip("peft")
    live = moe_conversion.from_library()
    shipped = moe_conversion.snapshot()
    assert shipped.versions == live.versions, "regenerate: python -m loraplan.arch.moe_conversion"
    assert shipped.as_json() == live.as_json(), "regenerate: python -m loraplan.arch.moe_conversion"


def test_snapshot_records_where_it_came_from() -> None:
    shipped = moe_conversion.snapshot()
    assert set(shipped.versions) == {"transformers", "peft"}
    assert shipped.pattern_of("sarvam_mla") == "qwen2_moe"
    assert shipped.pattern_of("mixtral") == "mixtral"
    assert shipped.pattern_of("qwen2_moe") is None  # PEFT does not convert the base pattern itself


def test_stale_versions_read_the_live_table_once(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    pytest.importorskip("peft")
    monkeypatch.setenv("LORAPLAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(moe_conversion, "installed_versions", lambda: {"transformers": "0", "peft": "0"})
    monkeypatch.delitem(__import__("sys").modules, "peft", raising=False)
    sources = []
    for _ in range(2):
        moe_conversion.current.cache_clear()
        sources.append(moe_conversion.current())
    moe_conversion.current.cache_clear()
    assert [t.source for t in sources] == ["installed peft", "installed peft (cached)"]
    assert sources[0].patterns == sources[1].patterns and sources[1].pattern_of("sarvam_mla") == "qwen2_moe"


def test_sarvam_105b_all_linear_equals_peft() -> None:
    # PEFT 0.21.2 on the meta-device SarvamMLAConfig() (the sarvamai/sarvam-105b defaults), LoraConfig(r=16,
    # target_modules="all-linear"): get_nb_trainable_parameters() -> 1,458,075,648. A hand copy of the
    # conversion table without `sarvam_mla` gave 35,848,192 (experts and routers left out).
    transformers = pytest.importorskip("transformers")
    config = transformers.SarvamMLAConfig().to_dict()
    arch = architecture_from_config(config, "sarvamai/sarvam-105b", "test")
    assert budget(arch, "peft", "all-linear").params(16) == 1_458_075_648
