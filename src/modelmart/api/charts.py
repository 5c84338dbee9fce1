"""Charts drawn on the server as inline SVG: stacked bars and lines over a series of
points. No JavaScript and no chart library: a page's charts arrive with the page, scale
with it (a viewBox), print, and work with scripts off. Colours come from the stylesheet
(classes ``s0``, ``s1``, ...); each bar or point has a ``<title>`` tooltip."""

from __future__ import annotations

import math
from typing import Callable, Sequence

from markupsafe import Markup, escape

W, H = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 10, 26

Series = Sequence[tuple[str, str]]  # (field of a point, label)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^n at or above ``value`` (an axis' top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _frame(top: float, fmt: Callable, points: list[dict], label: Callable) -> list[str]:
    inner_h = H - TOP - BOTTOM
    parts = []
    for frac in (0, 0.5, 1):
        y = TOP + inner_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(fmt(top * frac))}</text>')
    n = len(points)
    step = (W - LEFT - RIGHT) / max(n, 1)
    ticks = sorted({0, n // 2, n - 1}) if n > 2 else range(n)
    for i in ticks:
        x = LEFT + step * (i + 0.5)
        parts.append(f'<text class="axis" x="{x:.1f}" y="{H - 8}" text-anchor="middle">'
                     f'{escape(label(points[i]))}</text>')
    return parts


def _svg(parts: list[str], series: Series, title: str) -> Markup:
    legend = "".join(f'<span class="key"><i class="s{k}"></i>{escape(name)}</span>'
                     for k, (_, name) in enumerate(series))
    return Markup(f'<figure class="chart"><svg viewBox="0 0 {W} {H}" role="img" '
                  f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
                  f'{"".join(parts)}</svg><figcaption>{escape(title)} {legend}'
                  f'</figcaption></figure>')


def bars(points: list[dict], series: Series, title: str, fmt: Callable = str,
         label: Callable = lambda p: p["t"]) -> Markup:
    """Stacked bars, a bar per point, a segment per series."""
    top = nice_ceiling(max((sum(p[f] for f, _ in series) for p in points), default=0))
    inner_h = H - TOP - BOTTOM
    step = (W - LEFT - RIGHT) / max(len(points), 1)
    gap = min(2.0, step * 0.15)
    parts = _frame(top, fmt, points, label)
    for i, p in enumerate(points):
        y = TOP + inner_h
        tip = f"{label(p)}: " + ", ".join(f"{name} {fmt(p[f])}" for f, name in series)
        parts.append(f"<g><title>{escape(tip)}</title>")
        for k, (f, _) in enumerate(series):
            h = inner_h * p[f] / top
            if h <= 0:
                continue
            y -= h
            parts.append(f'<rect class="s{k}" x="{LEFT + i * step + gap:.1f}" y="{y:.1f}" '
                         f'width="{max(step - 2 * gap, 0.5):.1f}" height="{h:.1f}"/>')
        parts.append("</g>")
    return _svg(parts, series, title)


def lines(points: list[dict], series: Series, title: str, fmt: Callable = str,
          label: Callable = lambda p: p["t"]) -> Markup:
    """A line per series, with a dot (and tooltip) per point."""
    top = nice_ceiling(max((p[f] for p in points for f, _ in series), default=0))
    inner_h = H - TOP - BOTTOM
    step = (W - LEFT - RIGHT) / max(len(points), 1)
    parts = _frame(top, fmt, points, label)
    for k, (f, name) in enumerate(series):
        xy = [(LEFT + step * (i + 0.5), TOP + inner_h * (1 - p[f] / top))
              for i, p in enumerate(points)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        parts.append(f'<polyline class="line s{k}" points="{path}"/>')
        if len(points) <= 62:
            for (x, y), p in zip(xy, points):
                parts.append(f'<circle class="s{k}" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
                             f"<title>{escape(f'{label(p)}: {name} {fmt(p[f])}')}</title>"
                             "</circle>")
    return _svg(parts, series, title)


def scatter(models: list[dict], title: str) -> Markup:
    """Quality (``mean``, 0..1 or a scale) against cost (``usd_per_item``): a dot per model,
    labelled; the frontier's dots (``tied``) in the second colour."""
    if not models:
        return Markup("")
    x_top = nice_ceiling(max(m["usd_per_item"] for m in models) or 1e-6)
    y_top = nice_ceiling(max(m["mean"] for m in models) or 1)
    inner_w, inner_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = []
    for frac in (0, 0.5, 1):
        y = TOP + inner_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/><text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{y_top * frac:.2f}</text>')
        x = LEFT + inner_w * frac
        parts.append(f'<text class="axis" x="{x:.1f}" y="{H - 8}" text-anchor="middle">'
                     f'${x_top * frac:.4g}</text>')
    for m in models:
        x = LEFT + inner_w * m["usd_per_item"] / x_top
        y = TOP + inner_h * (1 - m["mean"] / y_top)
        tip = f"{m['model']}: score {m['mean']:.3f}, ${m['usd_per_item']:.6f} an item"
        parts.append(f'<g><title>{escape(tip)}</title><circle class="s{1 if m.get("tied") else 0}" '
                     f'cx="{x:.1f}" cy="{y:.1f}" r="4"/><text class="label" x="{x + 6:.1f}" '
                     f'y="{y - 6:.1f}">{escape(m["model"])}</text></g>')
    return _svg(parts, [("", "model"), ("", "on the frontier")], title)
