"""Costs at scale, in one command: the saga store and durable timers.

    python benchmarks/scale.py sagas  [options of scale_sagas.py]
    python benchmarks/scale.py timers [options of scale_timers.py]
    python benchmarks/scale.py        # both, each with its defaults

``sagas`` (``scale_sagas.py``) builds 100k / 1M stored sagas and prints
prefix lookups, per-status counts, list filters, a full ``recover`` and
throughput against an empty store; ``timers`` (``scale_timers.py``) builds
100k instances asleep on timers and prints the idle worker's CPU, the claim
query and the lateness of timers fired at 2,000/s. Each prints its figures
with ratios and the load average at its start and end, and exits 0 whatever
they are.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PARTS = {"sagas": "scale_sagas", "timers": "scale_timers"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if args and args[0] not in PARTS:
        print(
            f"scale.py: unknown part {args[0]!r}: use one of {', '.join(PARTS)}",
            file=sys.stderr,
        )
        return 2
    wanted = [args[0]] if args else list(PARTS)
    for part in wanted:
        module = importlib.import_module(PARTS[part])
        print(f"== {part} ({PARTS[part]}.py)", flush=True)
        code = module.main(args[1:] if args else [])
        if code:
            return int(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
