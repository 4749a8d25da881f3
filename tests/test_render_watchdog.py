"""The per-record render time limit: a SIGALRM timer on the main thread, a watchdog thread elsewhere.

Why two ways: a second thread makes glibc's malloc lock on every allocation for the rest of the
process, which slows the Rust tokenizer's encode_batch in the counting workers by several percent;
so a render on the main thread must not start one. Each case runs in a fresh interpreter, so that
the test runner's own threads and signal handlers (pytest-timeout, for one) play no part.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import signal, threading, time
from loraplan.data.limits import DataLimits, RenderTimeout
from loraplan.data.template import ChatTemplate

# 10**10 loop iterations through one range: only the time limit stops it
ENDLESS = "{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}"
QUICK = "{% for m in messages %}{{ m.content }}{% endfor %}"
CHAT = [{"role": "user", "content": "hi"}]

def timed_out(source, seconds=0.3):
    template = ChatTemplate(source, {}, DataLimits(render_seconds=seconds))
    start = time.monotonic()
    try:
        with template.record():
            template.render(CHAT)
    except RenderTimeout:
        return time.monotonic() - start
    return None

def watchdog_threads():
    return [t.name for t in threading.enumerate() if t.name == "loraplan-render-watchdog"]
"""


def run(body: str) -> str:
    code = PRELUDE + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_main_thread_render_is_stopped_by_an_alarm_without_starting_a_thread() -> None:
    out = run("""
        elapsed = timed_out(ENDLESS)
        print(elapsed is not None and elapsed < 5, watchdog_threads(), threading.active_count(),
              signal.getsignal(signal.SIGALRM) is signal.SIG_DFL, signal.getitimer(signal.ITIMER_REAL))
    """)
    assert out == "True [] 1 True (0.0, 0.0)"


def test_a_finished_render_leaves_no_alarm_behind() -> None:
    out = run("""
        print(timed_out(QUICK, seconds=0.2))
        time.sleep(0.5)  # past the deadline: a timer not withdrawn would kill or interrupt us here
        print("alive", signal.getitimer(signal.ITIMER_REAL))
    """)
    assert out.splitlines() == ["None", "alive (0.0, 0.0)"]


def test_background_thread_render_is_stopped_by_the_watchdog_thread() -> None:
    out = run("""
        result = []
        worker = threading.Thread(target=lambda: result.append(timed_out(ENDLESS)))
        worker.start()
        worker.join(30)
        print(result[0] is not None and result[0] < 5, watchdog_threads())
    """)
    assert out == "True ['loraplan-render-watchdog']"


def test_a_callers_own_sigalrm_handler_is_left_alone() -> None:
    out = run("""
        def mine(signum, frame):
            pass
        signal.signal(signal.SIGALRM, mine)
        elapsed = timed_out(ENDLESS)
        print(elapsed is not None and elapsed < 5, signal.getsignal(signal.SIGALRM) is mine, watchdog_threads())
    """)
    assert out == "True True ['loraplan-render-watchdog']"
