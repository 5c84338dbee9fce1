"""Two small charts as hand-written SVG (no plotting library): values with intervals, and
quality against cost with the Pareto front."""

from __future__ import annotations

from html import escape

WIDTH = 720
ROW = 34
LEFT = 190
RIGHT = 40
FONT = 'font-family="system-ui, sans-serif" font-size="13"'


def _head(width: int, height: int, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="12" y="22" {FONT} font-weight="bold">{escape(title)}</text>']


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    step = (high - low) / n if high > low else 1.0
    return [low + i * step for i in range(n + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def interval_chart(rows: list[tuple[str, float, float, float, str]], title: str,
                   axis: str, lo: float, hi: float) -> str:
    """rows: (label, value, low, high, note); a dot at the value, a bar over the interval."""
    height = 60 + ROW * len(rows) + 40
    plot_w = WIDTH - LEFT - RIGHT
    span = hi - lo if hi > lo else 1.0

    def x(v: float) -> float:
        return LEFT + plot_w * (min(max(v, lo), hi) - lo) / span

    out = _head(WIDTH, height, title)
    bottom = 50 + ROW * len(rows)
    for t in _ticks(lo, hi):
        out.append(f'<line x1="{x(t):.1f}" y1="40" x2="{x(t):.1f}" y2="{bottom}" '
                   'stroke="#e5e5e5"/>')
        out.append(f'<text x="{x(t):.1f}" y="{bottom + 16}" {FONT} text-anchor="middle" '
                   f'fill="#555">{_fmt(t)}</text>')
    for i, (label, value, low, high, note) in enumerate(rows):
        y = 60 + ROW * i
        out.append(f'<text x="{LEFT - 10}" y="{y + 4}" {FONT} text-anchor="end">'
                   f'{escape(label)}</text>')
        out.append(f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" '
                   'stroke="#4a78b5" stroke-width="3"/>')
        out.append(f'<circle cx="{x(value):.1f}" cy="{y}" r="5" fill="#1f3f6e"/>')
        out.append(f'<text x="{min(x(high) + 8, WIDTH - RIGHT):.1f}" y="{y + 4}" {FONT} '
                   f'fill="#333">{escape(_fmt(value))} [{escape(_fmt(low))}, '
                   f'{escape(_fmt(high))}] {escape(note)}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{height - 8}" {FONT} '
               f'text-anchor="middle" fill="#555">{escape(axis)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def scatter(points: list[tuple[str, float, float, bool]], title: str, x_axis: str,
            y_axis: str, y_range: tuple[float, float] | None = None) -> str:
    """points: (label, x = dollars per item, y = quality, on the Pareto front)."""
    height = 420
    left, right, top, bottom = 70, 160, 40, 360
    xs = [p[1] for p in points] or [0.0]
    ys = [p[2] for p in points] or [0.0]
    x_lo, x_hi = 0.0, max(xs) * 1.1 or 1.0
    y_lo, y_hi = y_range or (min(0.0, min(ys)), max(ys) * 1.1 or 1.0)

    def px(v: float) -> float:
        return left + (WIDTH - left - right) * (v - x_lo) / (x_hi - x_lo)

    def py(v: float) -> float:
        return bottom - (bottom - top) * (v - y_lo) / (y_hi - y_lo)

    out = _head(WIDTH, height, title)
    for t in _ticks(x_lo, x_hi):
        out.append(f'<text x="{px(t):.1f}" y="{bottom + 18}" {FONT} text-anchor="middle" '
                   f'fill="#555">{_fmt(t)}</text>')
    for t in _ticks(y_lo, y_hi):
        out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{WIDTH - right}" y2="{py(t):.1f}" '
                   'stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 8}" y="{py(t) + 4:.1f}" {FONT} text-anchor="end" '
                   f'fill="#555">{_fmt(t)}</text>')
    front = sorted((p for p in points if p[3]), key=lambda p: p[1])
    if len(front) > 1:
        path = " ".join(f"{px(p[1]):.1f},{py(p[2]):.1f}" for p in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="#c0504d" '
                   'stroke-dasharray="5,4"/>')
    for label, xv, yv, on_front in points:
        color = "#c0504d" if on_front else "#888"
        out.append(f'<circle cx="{px(xv):.1f}" cy="{py(yv):.1f}" r="6" fill="{color}"/>')
        out.append(f'<text x="{px(xv) + 9:.1f}" y="{py(yv) + 4:.1f}" {FONT}>'
                   f'{escape(label)}</text>')
    out.append(f'<text x="{(left + WIDTH - right) / 2:.1f}" y="{height - 14}" {FONT} '
               f'text-anchor="middle" fill="#555">{escape(x_axis)}</text>')
    out.append(f'<text x="16" y="{(top + bottom) / 2:.1f}" {FONT} fill="#555" '
               f'transform="rotate(-90 16 {(top + bottom) / 2:.1f})" text-anchor="middle">'
               f'{escape(y_axis)}</text>')
    out.append(f'<text x="{WIDTH - right + 10}" y="{top + 10}" {FONT} fill="#c0504d">'
               'red: Pareto front</text>')
    out.append("</svg>")
    return "\n".join(out)
