"""The cells of the matrix: every client surface × provider × (stream, non-stream) ×
scenario, minus the few that do not apply, each with the reason it does not."""

from __future__ import annotations

from typing import NamedTuple

from .clients import SURFACES
from .providers import PROVIDERS

SCENARIOS = ("text", "tool", "parallel_tools", "tool_result", "image",
             "error_400", "error_429", "error_500", "error_503", "error_midstream")
MODES = ("non-stream", "stream")

_NO_UPSTREAM = "no upstream to script: the model runs in-process"
# (provider, scenario) -> why the cell is not generated.
NOT_APPLICABLE = {
    ("local", "parallel_tools"): "its tool grammar makes exactly one call per answer",
    ("local", "error_429"): _NO_UPSTREAM,
    ("local", "error_500"): _NO_UPSTREAM,
    ("local", "error_503"): _NO_UPSTREAM,
    ("local", "error_midstream"): _NO_UPSTREAM,
}
# Kept apart from NOT_APPLICABLE: a stream-only scenario is no gap in the matrix.
STREAM_ONLY = {"error_midstream"}


class Cell(NamedTuple):
    surface: str
    provider: str
    mode: str
    scenario: str

    @property
    def stream(self) -> bool:
        return self.mode == "stream"

    @property
    def id(self) -> str:
        return "/".join(self)


def cells() -> list[Cell]:
    out = []
    for surface in SURFACES:
        for provider in PROVIDERS:
            for mode in MODES:
                for scenario in SCENARIOS:
                    if (provider, scenario) in NOT_APPLICABLE:
                        continue
                    if scenario in STREAM_ONLY and mode != "stream":
                        continue
                    out.append(Cell(surface, provider, mode, scenario))
    return out
