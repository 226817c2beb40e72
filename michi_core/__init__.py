"""Michi core: the MichiAI full-duplex speech model, its streaming engine and its stores.

No Qt here: the app and the training code build on this package, never the reverse.
"""

__version__ = "0.1.0"
