"""Workflow-style sagas: a fund transfer and a payment waiting on a webhook."""

from __future__ import annotations
