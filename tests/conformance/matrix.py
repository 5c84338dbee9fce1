"""Run the conformance suite and print the README's matrix from what actually passed.

    python -m tests.conformance.matrix             # runs pytest, prints the Markdown table
    python -m tests.conformance.matrix --from X    # renders an existing JUnit XML report

A cell lists each scenario group that passed in every generated test of it, streamed and
not; a group with a failed, erroring or skipped test is shown as ✗ with the failing ids.
The exit status is pytest's (or 1 when a rendered report holds failures).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .cells import NOT_APPLICABLE, cells
from .clients import SURFACES
from .providers import PROVIDERS

ROOT = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"test_matrix\[(.+)\]")

SURFACE_TITLE = {
    "openai-chat": "OpenAI Chat (`openai` SDK)",
    "anthropic-messages": "Anthropic Messages (`anthropic` SDK)",
    "openai-responses": "OpenAI Responses (`openai` SDK)",
    "bedrock-converse": "Bedrock Converse (`boto3`)",
    "gemini": "Gemini (`google-genai` SDK)",
}
PROVIDER_TITLE = {"local": "local (SmolLM2, real)", "openai": "openai", "anthropic": "anthropic",
                  "bedrock": "bedrock", "gemini": "gemini"}
# Scenario -> the group it counts towards in a cell, in display order.
GROUP = {"text": "text", "tool": "tools", "parallel_tools": "parallel",
         "tool_result": "results", "image": "images", "error_400": "errors",
         "error_429": "errors", "error_500": "errors", "error_503": "errors",
         "error_midstream": "errors"}
GROUPS = ("text", "tools", "parallel", "results", "images", "errors")
# What a group means for the local model, where it differs.
LOCAL_LABEL = {"tools": "tools (forced)", "images": "images refused (400)",
               "errors": "errors (400)"}


def outcomes(junit_xml: Path) -> dict[str, bool]:
    """Cell id -> passed, from a JUnit XML report."""
    out: dict[str, bool] = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        m = _NAME.fullmatch(case.get("name", ""))
        if m is None:
            continue
        bad = any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))
        out[m.group(1)] = out.get(m.group(1), True) and not bad
    return out


def cell_text(surface: str, provider: str, results: dict[str, bool]) -> str:
    mine = [c for c in cells() if c.surface == surface and c.provider == provider]
    passed, failed = [], []
    for group in GROUPS:
        ids = [c.id for c in mine if GROUP[c.scenario] == group]
        if not ids:
            continue
        label = LOCAL_LABEL.get(group, group) if provider == "local" else group
        bad = [i for i in ids if results.get(i) is False]
        unrun = [i for i in ids if i not in results]
        if bad or unrun:
            where = [i.split("/", 2)[2] for i in bad] + [f"{i.split('/', 2)[2]} not run"
                                                         for i in unrun]
            failed.append(f"✗ {label} ({', '.join(where)})")
        else:
            passed.append(label)
    text = ("✓ " + " · ".join(passed) + " (stream + non-stream)") if passed else ""
    return "; ".join([t for t in [text, *failed] if t])


def table(results: dict[str, bool]) -> str:
    head = "| client surface | " + " | ".join(PROVIDER_TITLE[p] for p in PROVIDERS) + " |"
    lines = [head, "|" + " --- |" * (len(PROVIDERS) + 1)]
    for surface in SURFACES:
        row = [cell_text(surface, p, results) for p in PROVIDERS]
        lines.append(f"| {SURFACE_TITLE[surface]} | " + " | ".join(row) + " |")
    reasons: dict[str, list[str]] = {}
    for (provider, scenario), why in NOT_APPLICABLE.items():
        reasons.setdefault(f"{provider}: {why}", []).append(scenario)
    lines.append("")
    lines.append("Not applicable, so not generated: " + "; ".join(
        f"{', '.join(s)} ({k})" for k, s in reasons.items()) + ".")
    total, ok = len(cells()), sum(results.get(c.id, False) for c in cells())
    lines.append(f"{ok} of {total} cells pass.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="report", type=Path,
                        help="render this JUnit XML report instead of running pytest")
    args = parser.parse_args(argv)
    if args.report is not None:
        results = outcomes(args.report)
        print(table(results))
        return 0 if all(results.get(c.id, False) for c in cells()) else 1
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "conformance.xml"
        status = subprocess.call([sys.executable, "-m", "pytest", "tests/conformance", "-q",
                                  "-p", "no:cacheprovider", f"--junitxml={report}"], cwd=ROOT)
        if not report.exists():
            return status or 1
        print()
        print(table(outcomes(report)))
    return status


if __name__ == "__main__":
    sys.exit(main())
