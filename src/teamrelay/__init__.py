"""teamrelay: a self-hosted relay between a team and the OpenAI API."""

__version__ = "0.1.0"

__all__ = ["__version__"]
