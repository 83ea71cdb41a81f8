"""The ``sagakit`` command line: thin, it parses, calls the library and renders."""

from __future__ import annotations
