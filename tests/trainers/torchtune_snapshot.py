"""Generate loraplan's torchtune model snapshot from torchtune's own bundled LoRA configs.

For every builder loraplan maps a model to, the tokenizer component and files, the checkpointer and its
model_type, and (when torchtune ships a config for that exact builder) the checkpoint files, as
torchtune's `recipes/configs/*/*_lora_single_device.yaml` state them. Paths are kept relative to the
config's checkpoint_dir. The test compares the shipped snapshot with a fresh one from the installed
torchtune, so a torchtune release that renames a component fails loudly.

    python -m tests.trainers.torchtune_snapshot > src/loraplan/formats/torchtune_models.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _relative(path: str, base: str) -> str:
    base = base.rstrip("/") + "/"
    return path[len(base):] if path.startswith(base) else path


def snapshot(torchtune_root: Path, builders: list[str], version: str) -> dict[str, Any]:
    import yaml

    configs = sorted((torchtune_root / "recipes" / "configs").glob("*/*lora_single_device.yaml"))
    by_builder: dict[str, tuple[Path, dict[str, Any]]] = {}
    by_module: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in configs:
        config = yaml.safe_load(path.read_text())
        component = str(config.get("model", {}).get("_component_", ""))
        if ".qlora_" in component or "vision" in component:
            continue
        by_builder.setdefault(component, (path, config))
        by_module.setdefault(component.rsplit(".", 1)[0], (path, config))
    out: dict[str, Any] = {}
    for builder in builders:
        exact = builder in by_builder
        found = by_builder.get(builder) or by_module.get(builder.rsplit(".", 1)[0])
        if found is None:
            continue
        path, config = found
        checkpointer = config["checkpointer"]
        base = str(checkpointer["checkpoint_dir"])
        tokenizer = {k: (_relative(str(v), base) if k in ("path", "merges_file") else v)
                     for k, v in config["tokenizer"].items() if k in ("_component_", "path", "merges_file")}
        entry: dict[str, Any] = {
            "config": str(path.relative_to(torchtune_root)),
            "tokenizer": tokenizer,
            "checkpointer": {"_component_": checkpointer["_component_"], "model_type": checkpointer["model_type"]},
        }
        if exact:
            entry["checkpointer"]["checkpoint_files"] = checkpointer["checkpoint_files"]
        out[builder] = entry
    return {"torchtune_version": version, "builders": out}


def main() -> None:
    from loraplan.formats.torchtune import BUILDERS
    from tests.trainers.envs import PACKAGES, ensure

    root = ensure("torchtune")
    version = PACKAGES["torchtune"][0].split("==")[1]
    print(json.dumps(snapshot(root, sorted(set(BUILDERS.values())), version), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
