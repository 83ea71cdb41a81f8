"""The CreateOrder saga: an order service orchestrating consumer, kitchen and
accounting services, each its own process, over a message broker.

See README.md in this directory for how to run it.
"""

from __future__ import annotations
