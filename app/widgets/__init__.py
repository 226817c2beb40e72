"""Widgets of the Michi desktop app, one per file."""
