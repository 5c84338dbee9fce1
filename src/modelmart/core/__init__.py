"""Canonical types, money and errors. Imports nothing else of modelmart; does no I/O."""
