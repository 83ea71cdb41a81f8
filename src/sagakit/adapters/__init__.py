"""Adapters: concrete stores and transports behind the ports."""
