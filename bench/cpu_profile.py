"""Run a command's ``main`` under cProfile counting CPU time, not wall time.

``python -m bench.cpu_profile OUT -m runstream server ...``: on a loaded machine a wall-clock
profile charges a process's waits for a core to whatever it was running (a ``send`` that
wakes the receiver shows up as milliseconds); CPU time shows what the process itself spends.
The stats are written to OUT when the command returns (SIGTERM ends ``runstream server``
cleanly).
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    out, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: python -m bench.cpu_profile OUT -m MODULE [ARGS...]")
    sys.argv = [module, *rest]
    profiler = cProfile.Profile(time.process_time)
    try:
        profiler.runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
