"""The portal's pages rendered from their figures: Jinja templates, autoescaped, with inline SVG charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from .charts import trend_chart
from .dora import Figures

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), auto_reload=False)
    env.filters.update(
        hours=lambda v: "—" if v is None else f"{v:.1f} h",
        perday=lambda v: "—" if v is None else f"{v:.2f}/day",
        pct=lambda v: "—" if v is None else f"{v * 100:.1f}%",
        money=lambda v, currency="USD": "—" if v is None else f"{v:,.2f} {currency}",
        uptime=_uptime,
        chart=_chart,
    )
    return env


def _uptime(health_info: dict[str, Any], window: str) -> str:
    ratio = (health_info.get("uptime") or {}).get(window, {}).get("ratio")
    return "no probes" if ratio is None else f"{ratio * 100:.2f}%"


def _chart(trend: list[tuple[float, Figures]], field: str, label: str, bars: bool = False, unit: str = "") -> Markup:
    return trend_chart([(when, getattr(figures, field)) for when, figures in trend], label, unit, bars)


_PAGES = _environment()


def render_page(template: str, window: str, end: str | None, **context: Any) -> bytes:
    """A page, with links that keep its window and end. Slow for hundreds of rows: call it in a worker thread."""
    params = {k: v for k, v in (("window", window if window != "30d" else None), ("end", end)) if v}
    query = f"?{urlencode(params)}" if params else ""
    return _PAGES.get_template(template).render(window=window, end_param=end, query=query, **context).encode()
