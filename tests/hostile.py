"""Running the CLI on hostile input the way an attacker's file reaches a user: in a child process,
under a memory limit (RLIMIT_AS) and a timeout, offline. The oracle is the product's promise:
exit 2 (or 0/1 for a usable file), one line on stderr, never a traceback, a hang or unbounded memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
MEMORY_LIMIT = 3 * GIB  # address space: Python + pydantic + rich + ruamel take ~0.5 GiB of it
SRC = str(Path(__file__).resolve().parent.parent / "src")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path, "COLUMNS": "80", **(extra or {})}


def _limits(memory: int, umask: int | None):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if umask is not None:
            os.umask(umask)
    return apply


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float


def run_limited(*args: str, cwd: Path | None = None, timeout: float = 60, memory: int = MEMORY_LIMIT,
                umask: int | None = None, env: dict[str, str] | None = None) -> Run:
    """`python -m loraplan ARGS` in a child with RLIMIT_AS = memory; a hang fails the test at `timeout`."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "loraplan", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=_env(env), preexec_fn=_limits(memory, umask))
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def assert_refused(run: Run, *words: str) -> None:
    """Exit 2, exactly one line on stderr (naming `words`), no traceback."""
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.code == 2, (run.code, run.stderr[-2000:])
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-2000:]
    for word in words:
        assert word in lines[0], (word, lines[0])


# One child runs a batch of invocations through loraplan.cli.main in-process (a fresh interpreter per input
# would cost ~1 s each). Each invocation's exit code, stderr and time are reported; an exception other than
# SystemExit is a traceback the user would have seen.
_DRIVER = textwrap.dedent('''
    import contextlib, io, json, sys, time, traceback
    import loraplan.cli as cli
    results = []
    for argv in json.loads(sys.argv[1]):
        err, out = io.StringIO(), io.StringIO()
        started = time.monotonic()
        code, trace = 0, None
        sys.argv = ["loraplan", *argv]
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                code, trace = -1, traceback.format_exc()
        results.append({"argv": argv, "code": code, "stderr": err.getvalue()[-2000:], "trace": trace,
                        "seconds": time.monotonic() - started})
    print(json.dumps(results))
''')


def run_batch(argvs: list[list[str]], cwd: Path, timeout: float = 120, memory: int = MEMORY_LIMIT) -> list[dict]:
    """Every argv through the CLI in one limited child; returns one result dict per argv."""
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(argvs)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=_env(), preexec_fn=_limits(memory, None))
    assert proc.returncode == 0, f"the batch child died (rc {proc.returncode}): {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.splitlines()[-1])


def assert_contained(result: dict, seconds: float = 20) -> None:
    """A usable answer (0/1) or one refusal line (2): no traceback, in bounded time."""
    where = f"{result['argv']}: "
    assert result["trace"] is None, where + result["trace"]
    assert "Traceback" not in result["stderr"], where + result["stderr"]
    assert result["code"] in (0, 1, 2), where + f"exit {result['code']}: {result['stderr']}"
    if result["code"] == 2:
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        assert len(lines) == 1, where + result["stderr"]
    assert result["seconds"] < seconds, where + f"{result['seconds']:.1f} s"
