"""certwatch: watch TLS certificates where they are served and stored."""

__version__ = "0.1.0"
