"""Each trainer's own code, installed apart from the project's environment, built by the tests on first use.

The trainers pin versions of transformers/peft/trl that conflict with the project's (LLaMA-Factory caps
transformers, torchtune wants an older torchao, Axolotl pins everything), so each goes into its own
folder under ~/.cache/loraplan-test/venvs/NAME with `pip install --no-deps --target`: the trainer's
package and the few pure-Python modules its parser or validator imports. They run on the project's
interpreter with PYTHONPATH=that folder, so torch and transformers are the project's (no second
multi-GB torch download; CI builds all four in well under a minute). A folder is reused while its
marker names the same packages. `python -m tests.trainers.envs` builds them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("LORAPLAN_TRAINER_CACHE", Path.home() / ".cache" / "loraplan-test" / "venvs"))

# name -> the packages installed (exact versions: what the tests validated against).
PACKAGES: dict[str, list[str]] = {
    "llamafactory": ["llamafactory==0.9.5", "omegaconf==2.3.0", "antlr4-python3-runtime==4.9.3"],
    "axolotl": ["axolotl==0.19.0", "addict==2.4.0"],
    "torchtune": ["torchtune==0.6.1", "torchao==0.11.0", "omegaconf==2.3.0", "antlr4-python3-runtime==4.9.3",
                  "sentencepiece==0.2.1", "tiktoken==0.12.0", "blobfile==3.1.0"],
    # Unsloth needs a CUDA GPU to import; its source is read with `ast` for the signatures the export calls.
    "unsloth": ["unsloth==2026.10.9"],
}
# Version checks some trainers run at import, off: they run on the project's newer libraries on purpose.
ENV = {"DISABLE_VERSION_CHECK": "1"}


class Unavailable(RuntimeError):
    """The trainer cannot be installed here (no package index): the test skips with this reason."""


def ensure(name: str) -> Path:
    """The folder holding `name`'s packages, installed first when missing or stale."""
    folder = CACHE / name
    marker = folder / ".loraplan-packages.json"
    wanted = PACKAGES[name]
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
               "--upgrade", "--target", str(folder), *wanted]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise Unavailable(f"pip could not install {' '.join(wanted)}: {proc.stderr.strip()[-400:]}")
    marker.write_text(json.dumps(wanted))
    return folder


def run_with(name: str, code: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run `code` on the project's interpreter with `name`'s folder first on the path."""
    folder = ensure(name)
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


if __name__ == "__main__":
    for trainer in PACKAGES:
        print(trainer, ensure(trainer))
