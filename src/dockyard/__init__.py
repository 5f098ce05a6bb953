"""dockyard: a self-hosted container content store."""

__version__ = "0.1.0"
