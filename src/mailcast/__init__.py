"""mailcast: a self-hosted email broadcast-campaign engine."""

__version__ = "0.1.0"
