"""The ``modelmart`` command."""
