"""Settings read from the environment (and an optional `.env`), with safe defaults for embedded mode."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
