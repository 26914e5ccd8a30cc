"""Two small SVG charts written by hand (no plotting dependency): grouped bars and lines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f6feb", "#8fb8f5", "#d9480f", "#f5b08c", "#2b8a3e", "#8ce99a", "#862e9c", "#d0bfff")
FONT = "font-family='Helvetica, Arial, sans-serif'"


def _text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start") -> str:
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' {FONT}>"
        f"{escape(text)}</text>"
    )


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def bars(
    title: str,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    unit: str = "ms",
    log: bool = True,
    targets: Sequence[float | None] = (),
) -> str:
    """Grouped horizontal bars: one group per label, one bar per series; targets as ticks."""
    bar_h, gap = 11, 12
    left, right, top = 300, 70, 50
    width = 980
    group_h = bar_h * len(series) + gap
    height = top + group_h * len(groups) + 60
    values = [v for _name, vs in series for v in vs if v > 0]
    high = max(values + [t for t in targets if t]) if values else 1.0
    low = min(values) if values else 0.1
    plot_w = width - left - right

    def x_of(value: float) -> float:
        if value <= 0:
            return left
        if log:
            lo = 10 ** math.floor(math.log10(max(low, 1e-3)))
            hi = 10 ** math.ceil(math.log10(high))
            return left + plot_w * (math.log10(value) - math.log10(lo)) / (
                math.log10(hi) - math.log10(lo)
            )
        return left + plot_w * value / _nice_max(high)

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        _text(left, 24, title, size=15),
    ]
    ticks: list[float] = []
    if log:
        lo = math.floor(math.log10(max(low, 1e-3)))
        hi = math.ceil(math.log10(high))
        ticks = [10.0**e for e in range(lo, hi + 1)]
    else:
        top_value = _nice_max(high)
        ticks = [top_value * i / 5 for i in range(6)]
    for tick in ticks:
        x = x_of(tick)
        out.append(
            f"<line x1='{x:.1f}' y1='{top - 8}' x2='{x:.1f}' y2='{height - 50}' "
            "stroke='#ddd' stroke-width='1'/>"
        )
        out.append(_text(x, height - 34, f"{tick:g} {unit}", size=10, anchor="middle"))
    for g, group in enumerate(groups):
        y0 = top + g * group_h
        out.append(_text(left - 8, y0 + group_h / 2, group, size=11, anchor="end"))
        for s, (_name, vs) in enumerate(series):
            value = vs[g] if g < len(vs) else 0.0
            y = y0 + s * bar_h
            w = max(x_of(value) - left, 0.0)
            colour = PALETTE[s % len(PALETTE)]
            out.append(
                f"<rect x='{left}' y='{y:.1f}' width='{w:.1f}' height='{bar_h - 2}' "
                f"fill='{colour}'/>"
            )
            if value > 0:
                out.append(_text(left + w + 3, y + bar_h - 3, number(value), size=9))
        target = targets[g] if g < len(targets) else None
        if target:
            x = x_of(target)
            out.append(
                f"<line x1='{x:.1f}' y1='{y0 - 2}' x2='{x:.1f}' y2='{y0 + group_h - gap + 2}' "
                "stroke='#c92a2a' stroke-width='2' stroke-dasharray='3,2'/>"
            )
    legend_y = height - 14
    x = left
    for s, (name, _vs) in enumerate(series):
        out.append(
            f"<rect x='{x}' y='{legend_y - 9}' width='10' height='10' "
            f"fill='{PALETTE[s % len(PALETTE)]}'/>"
        )
        out.append(_text(x + 14, legend_y, name, size=11))
        x += 16 + 7 * len(name) + 18
    if targets:
        out.append(
            f"<line x1='{x}' y1='{legend_y - 4}' x2='{x + 14}' y2='{legend_y - 4}' "
            "stroke='#c92a2a' stroke-width='2' stroke-dasharray='3,2'/>"
        )
        out.append(_text(x + 18, legend_y, "target (p99)", size=11))
    out.append("</svg>")
    return "\n".join(out)


def lines(
    title: str,
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    x_label: str,
    unit: str = "ms",
) -> str:
    """Lines over a logarithmic x axis (data-set size) and a logarithmic y axis (latency)."""
    width, height = 980, 520
    left, right, top, bottom = 80, 260, 50, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _n, vs in series for v in vs if v > 0] or [1.0]
    y_lo = 10 ** math.floor(math.log10(min(values)))
    y_hi = 10 ** math.ceil(math.log10(max(values)))
    x_lo, x_hi = math.log10(min(xs)), math.log10(max(xs))
    x_span = (x_hi - x_lo) or 1.0

    def x_of(value: float) -> float:
        return left + plot_w * (math.log10(value) - x_lo) / x_span

    def y_of(value: float) -> float:
        span = math.log10(y_hi) - math.log10(y_lo) or 1.0
        return top + plot_h * (1 - (math.log10(max(value, y_lo)) - math.log10(y_lo)) / span)

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        _text(left, 24, title, size=15),
    ]
    exponent = math.floor(math.log10(y_lo))
    while 10**exponent <= y_hi:
        for step in (1, 2, 5):
            tick = step * 10**exponent
            if not y_lo <= tick <= y_hi:
                continue
            y = y_of(tick)
            colour = "#ccc" if step == 1 else "#eee"
            out.append(
                f"<line x1='{left}' y1='{y:.1f}' x2='{left + plot_w}' y2='{y:.1f}' "
                f"stroke='{colour}'/>"
            )
            out.append(_text(left - 6, y + 4, f"{tick:g} {unit}", size=10, anchor="end"))
        exponent += 1
    for x_value in xs:
        x = x_of(x_value)
        out.append(
            f"<line x1='{x:.1f}' y1='{top}' x2='{x:.1f}' y2='{top + plot_h}' stroke='#eee'/>"
        )
        out.append(_text(x, top + plot_h + 18, _count(x_value), size=11, anchor="middle"))
    out.append(_text(left + plot_w / 2, height - 16, x_label, size=12, anchor="middle"))
    for s, (name, vs) in enumerate(series):
        colour = PALETTE[s % len(PALETTE)]
        points = [(x_of(x), y_of(v)) for x, v in zip(xs, vs, strict=False) if v > 0]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(
                f"<polyline points='{path}' fill='none' stroke='{colour}' stroke-width='2'/>"
            )
        for x, y in points:
            out.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3.5' fill='{colour}'/>")
        legend_y = top + 10 + s * 18
        out.append(
            f"<rect x='{left + plot_w + 16}' y='{legend_y - 9}' width='10' height='10' "
            f"fill='{colour}'/>"
        )
        out.append(_text(left + plot_w + 30, legend_y, name, size=11))
    out.append("</svg>")
    return "\n".join(out)


def number(value: float) -> str:
    """A figure as people read it: 0.04, 3.2, 48, 1,250."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"


def _count(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"
