"""Michi desktop app (PySide6)."""
