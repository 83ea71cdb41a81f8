"""Runnable sagas, each driven by an end-to-end test (tests/e2e)."""

from __future__ import annotations
