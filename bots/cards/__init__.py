"""Character cards (V1, V2, V3; PNG or JSON) in and out of persona files: `botfleet import` / `export`."""

from __future__ import annotations


class CardError(Exception):
    """A card that cannot be imported or a persona that cannot be exported: one line saying why."""
