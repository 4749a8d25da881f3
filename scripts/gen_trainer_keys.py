"""Regenerate src/loraplan/formats/trainer_keys.json: every top-level key each trainer accepts.

`check` calls a key a misspelling only when it is not one of these (PEFT >= 0.16 saves `use_qalora`,
`use_bdlora`, ...; LLaMA-Factory accepts every TrainingArguments field such as `local_rank`).

- peft, transformers, trl: read from the installed libraries (dataclasses.fields), versions recorded;
  tests/test_trainer_keys.py fails when the installed library disagrees with the snapshot.
- axolotl, llamafactory: not installable here; read from their repositories' schema sources with `ast`
  (Axolotl's pydantic schema classes, LLaMA-Factory's hparams dataclasses), repository and commit recorded.

Usage: python scripts/gen_trainer_keys.py AXOLOTL_REPO_DIR LLAMAFACTORY_REPO_DIR
(git directories or work trees; the fetch of a public snapshot is enough).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "loraplan" / "formats" / "trainer_keys.json"
TRL_CONFIGS = ("SFTConfig", "DPOConfig", "GRPOConfig", "KTOConfig", "RLOOConfig", "RewardConfig",
               "DistillationConfig", "ModelConfig", "ScriptArguments")
TRL_EXPERIMENTAL = {"orpo": "ORPOConfig", "cpo": "CPOConfig", "online_dpo": "OnlineDPOConfig", "gkd": "GKDConfig"}


def installed() -> dict[str, dict[str, object]]:
    """Keys from the installed peft, transformers and trl."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.simplefilter("ignore")
    import importlib

    import peft
    import transformers
    import trl

    out: dict[str, dict[str, object]] = {
        "peft": {"source": f"peft {peft.__version__}: dataclasses.fields(peft.LoraConfig)",
                 "version": peft.__version__, "keys": fields(peft.LoraConfig)},
        "transformers": {"source": f"transformers {transformers.__version__}: "
                                   "dataclasses.fields(transformers.Seq2SeqTrainingArguments)",
                         "version": transformers.__version__, "keys": fields(transformers.Seq2SeqTrainingArguments)},
    }
    keys: set[str] = set()
    for name in TRL_CONFIGS:
        keys |= set(fields(getattr(trl, name)))
    for module, name in TRL_EXPERIMENTAL.items():
        try:
            keys |= set(fields(getattr(importlib.import_module(f"trl.experimental.{module}"), name)))
        except (ImportError, AttributeError):
            continue
    out["trl"] = {"source": f"trl {trl.__version__}: dataclasses.fields of {', '.join(TRL_CONFIGS)} and "
                            f"trl.experimental {', '.join(TRL_EXPERIMENTAL.values())}",
                  "version": trl.__version__, "keys": sorted(keys)}
    return out


def fields(cls: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_"))


def _git(repo: Path, *args: str) -> str:
    return subprocess.check_output(["git", "-C", str(repo), *args], text=True)


def _class_fields(source: str, dataclass_only: bool) -> set[str]:
    """Annotated class-level names of every class (pydantic models) or of @dataclass classes."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        if dataclass_only and not any("dataclass" in ast.unparse(d) for d in node.decorator_list):
            continue
        for item in node.body:
            if (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                    and not item.target.id.startswith("_") and "ClassVar" not in ast.unparse(item.annotation)):
                names.add(item.target.id)
    return names


def from_repo(repo: Path, folder: str, dataclass_only: bool) -> tuple[str, list[str]]:
    commit = _git(repo, "rev-parse", "HEAD").strip()
    keys: set[str] = set()
    for path in _git(repo, "ls-tree", "-r", "--name-only", "HEAD", folder).split():
        if path.endswith(".py"):
            keys |= _class_fields(_git(repo, "show", f"HEAD:{path}"), dataclass_only)
    return commit, sorted(keys)


def main(axolotl: Path, llamafactory: Path) -> None:
    data = installed()
    commit, keys = from_repo(axolotl, "src/axolotl/utils/schemas", dataclass_only=False)
    data["axolotl"] = {"source": f"axolotl-ai-cloud/axolotl@{commit}: annotated fields of the classes in "
                                 "src/axolotl/utils/schemas/*.py", "commit": commit, "keys": keys}
    commit, keys = from_repo(llamafactory, "src/llamafactory/hparams", dataclass_only=True)
    data["llamafactory"] = {"source": f"hiyouga/LLaMA-Factory@{commit}: dataclass fields in "
                                      "src/llamafactory/hparams/*.py (plus transformers' Seq2SeqTrainingArguments)",
                            "commit": commit, "keys": keys}
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    counts = ", ".join(f"{name}: {len(entry['keys'])} keys" for name, entry in data.items())
    print(f"wrote {OUT} ({counts})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
