"""Michi training: data synthesis and alignment, the staged trainer, evaluation, `reproduce`.

Imports `michi_core`, never the app. Every stage is a `michi-train <stage> ...` command.
"""
