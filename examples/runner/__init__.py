"""One command per example: start every service, run the scenarios, print
the outcome, stop everything (``make example-create-order``,
``make example-parking``, ``python -m examples.runner NAME``).

The runner drives each example through its stable entry points only: the
``sagakit`` command (``worker``, ``participant``), ``uvicorn MODULE:app``,
and the example's own command line (``place_order``, ``examples.parking.cli``).
Each example's README keeps the manual steps.
"""
