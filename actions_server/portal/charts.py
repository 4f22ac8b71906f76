"""Inline SVG charts: no script, no CDN, readable offline and on a phone."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH = 240
HEIGHT = 64
PAD = 6


def trend_chart(points: list[tuple[float, float | None]], label: str, unit: str = "", bars: bool = False) -> Markup:
    """A line (or bar) chart of `points` (x = epoch seconds); gaps where the value is None."""
    known = [v for _, v in points if v is not None]
    top = max(known) if known else 0.0
    top = top if top > 0 else 1.0
    step = (WIDTH - 2 * PAD) / max(1, len(points) - (0 if bars else 1))

    def x(i: int) -> float:
        return PAD + i * step

    def y(value: float) -> float:
        return HEIGHT - PAD - (value / top) * (HEIGHT - 2 * PAD)

    shapes: list[str] = []
    if bars:
        for i, (_, value) in enumerate(points):
            if value is None:
                continue
            height = HEIGHT - PAD - y(value)
            shapes.append(
                f'<rect x="{x(i) + 1:.1f}" y="{y(value):.1f}" width="{max(1.0, step - 2):.1f}" '
                f'height="{max(0.5, height):.1f}" class="bar"><title>{_title(points[i][0], value, unit)}</title></rect>'
            )
    else:
        run: list[str] = []
        for i, (_, value) in enumerate(points):
            if value is None:
                if len(run) > 1:
                    shapes.append(f'<polyline points="{" ".join(run)}" class="line"/>')
                run = []
                continue
            run.append(f"{x(i):.1f},{y(value):.1f}")
            shapes.append(
                f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="2.5" class="dot">'
                f"<title>{_title(points[i][0], value, unit)}</title></circle>"
            )
        if len(run) > 1:
            shapes.insert(0, f'<polyline points="{" ".join(run)}" class="line"/>')
    if not known:
        shapes.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2 + 4}" text-anchor="middle" class="nodata">no data</text>')
    # Every interpolated value is a number we computed or passed through escape().
    return Markup(  # noqa: S704
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none" class="chart">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        + "".join(shapes)
        + "</svg>"
    )


def _title(when: float, value: float, unit: str) -> str:
    day = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d")
    return str(escape(f"until {day}: {value:.3g}{unit}"))
