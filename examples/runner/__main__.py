"""``python -m examples.runner NAME [--db URL] [--transport URL]``: run one
example end to end (``create-order`` or ``parking``)."""

from __future__ import annotations

import sys

from examples.runner.create_order import CreateOrder
from examples.runner.parking import Parking
from examples.runner.run import CANNOT_RUN, Example, main

EXAMPLES: dict[str, type[Example]] = {"create-order": CreateOrder, "parking": Parking}


def run(argv: list[str]) -> int:
    if not argv or argv[0] not in EXAMPLES:
        print(
            f"usage: python -m examples.runner {{{','.join(EXAMPLES)}}} "
            "[--db URL] [--transport URL]",
            file=sys.stderr,
        )
        return CANNOT_RUN
    return main(EXAMPLES[argv[0]](), argv[1:])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
