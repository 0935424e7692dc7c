"""botfleet: many AI personas in one asyncio process."""

__version__ = "0.1.0"
