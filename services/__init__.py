"""Vigil services: thin adapters around shared/."""
