"""citywifi controller: the domain core (config, quota, access decisions, Redis store), CLI."""

__version__ = "0.1.0"
