"""Runnable example sagas, shipped with the package so ``sagakit demo`` works."""

from __future__ import annotations
