"""Parking booking as a choreography: booking, billing and parking services."""

from __future__ import annotations
