"""Template drift: per template, each version, how many services are on it, and their update requests."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from jinja2 import Environment, select_autoescape

from ..auth import Caller
from ..config import Settings
from ..templates.catalog import TemplateCatalog, find_template_or_404
from ..updates.fleet import drift, services_made_from
from ..updates.history import TemplateHistory
from .deps import Authed, SettingsDep, TemplatesDep
from .models import TemplateDrift, errors

router = APIRouter()

_PAGE = Environment(autoescape=select_autoescape(default=True, default_for_string=True)).from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Templates · pltf</title>
<style>body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;width:100%}td,th{padding:.3em .6em;border-bottom:1px solid #eee;text-align:left}
.muted{color:#777}</style></head><body>
<p class="muted"><a href="{{ base }}/templates">templates</a></p>
{% for t in templates %}<h2><a href="{{ base }}/templates/{{ t.template }}">{{ t.template }}</a>
<span class="muted">latest {{ t.latestVersion }}</span></h2>
<table><tr><th>Version</th><th>Services</th></tr>{% for v in t.versions %}
<tr><td>{{ v.version }}</td><td>{{ v.services }}</td></tr>{% endfor %}</table>
<p>Update requests: {% for state, n in t.updateRequests.items() %}{{ state }} {{ n }} {% else %}none{% endfor %}</p>
{% if detail %}<table><tr><th>Repository</th><th>Version</th><th>Update requests</th></tr>
{% for s in t.services %}<tr><td>{{ s.repository }}</td><td>{{ s.version }}</td><td>{% for u in s.updates %}
<a href="{{ base }}/git/{{ s.repository }}/changes/{{ u.number }}">#{{ u.number }} to {{ u.toVersion }}: {{ u.state }}{% if u.status == "conflicts" %} (conflicts){% endif %}</a> {% endfor %}</td></tr>
{% endfor %}</table>{% endif %}{% endfor %}</body></html>"""
)


def template_drift(templates: TemplateCatalog, settings: Settings, name: str, who: Caller) -> dict[str, Any]:
    template = find_template_or_404(templates, name)
    services = services_made_from(settings, name, who)
    versions = TemplateHistory(settings).versions(name)
    if template.version not in versions:
        versions.append(template.version)
    return {
        "template": name,
        "latestVersion": template.version,
        **drift(services, versions),
        "services": [service.to_json() for service in services],
    }


@router.get(
    "/v1/templates/{name}/drift", tags=["templates"], response_model=TemplateDrift, responses=errors(401, 404, 422)
)
async def get_drift(name: str, who: Authed, templates: TemplatesDep, settings: SettingsDep) -> dict[str, Any]:
    return await anyio.to_thread.run_sync(template_drift, templates, settings, name, who)


@router.get("/templates", response_class=HTMLResponse, include_in_schema=False)
async def drift_page(who: Authed, templates: TemplatesDep, settings: SettingsDep) -> HTMLResponse:
    def every() -> list[dict[str, Any]]:
        return [template_drift(templates, settings, t.name, who) for t in templates.list()]

    found = await anyio.to_thread.run_sync(every)
    return HTMLResponse(_PAGE.render(base=settings.server.base_url, templates=found, detail=False))


@router.get("/templates/{name}", response_class=HTMLResponse, include_in_schema=False)
async def template_drift_page(name: str, who: Authed, templates: TemplatesDep, settings: SettingsDep) -> HTMLResponse:
    found = await anyio.to_thread.run_sync(template_drift, templates, settings, name, who)
    return HTMLResponse(_PAGE.render(base=settings.server.base_url, templates=[found], detail=True))
