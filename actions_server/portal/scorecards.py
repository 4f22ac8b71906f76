"""Scorecards: rules as data (data/scorecard.yaml) over catalog entities, repository contents and DORA."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..errors import PltfError
from ..updates.fleet import template_name
from ..updates.history import CRUFT_FILE
from .dora import LEVELS, at_least
from .entities import ServiceView

# A template's versions, oldest first (`updates.fleet.template_versions`).
Versions = Callable[[str], list[str]]
DEFAULT_RULES = Path(__file__).parent / "data" / "scorecard.yaml"
ROOT_USERS = {"root", "0", "0:0", "root:root"}


@cache
def load_rules(path: str | None = None) -> dict[str, Any]:
    source = Path(path) if path else DEFAULT_RULES
    try:
        data = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PltfError(f"cannot read the scorecard rules {source}: {exc}", 500, "bad_scorecard") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("levels"), list)
        or not isinstance(data.get("rules"), list)
    ):
        raise PltfError(f"{source}: a scorecard needs `levels` and `rules` lists", 500, "bad_scorecard")
    for rule in data["rules"]:
        if rule.get("level") not in data["levels"] or not rule.get("id") or not rule.get("fix"):
            raise PltfError(
                f"{source}: rule {rule.get('id')!r} needs an id, a known level and a fix", 500, "bad_scorecard"
            )
    return data


def _dotted(value: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def dockerfile_user(text: str) -> str | None:
    """The user the final stage runs as (its last USER), or None when it sets none (root)."""
    user: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if re.match(r"(?i)^FROM\s", stripped):
            user = None
        match = re.match(r"(?i)^USER\s+(\S+)", stripped)
        if match:
            user = match.group(1)
    return user


def evaluate(
    check: dict[str, Any], view: ServiceView, dora_level: str | None, template_versions: Versions | None = None
) -> tuple[bool, str]:
    """(passed, what was found) for one check."""
    if "anyOf" in check:
        results = [evaluate(c, view, dora_level, template_versions) for c in check["anyOf"]]
        return any(ok for ok, _ in results), "; ".join(why for _, why in results)
    if "allOf" in check:
        results = [evaluate(c, view, dora_level, template_versions) for c in check["allOf"]]
        return all(ok for ok, _ in results), "; ".join(why for _, why in results)
    entity = view.entity or {}
    repo = view.repo
    handlers: dict[str, Callable[[Any], tuple[bool, str]]] = {
        "entityField": lambda p: (
            bool(_dotted(entity, p)),
            f"{p} is {_dotted(entity, p)!r}" if view.entity else "no catalog entity",
        ),
        "annotation": lambda key: (
            bool(view.annotations.get(key)),
            f"annotation {key} {'set' if view.annotations.get(key) else 'missing'}",
        ),
        "link": lambda word: (
            any(
                word.lower() in str(link.get("title", "")).lower()
                for link in (entity.get("metadata") or {}).get("links") or []
                if isinstance(link, dict)
            ),
            f"link titled {word!r}",
        ),
        "fileExists": lambda pattern: (
            bool(repo and repo.glob(pattern)),
            f"{pattern}: {'found' if repo and repo.glob(pattern) else 'not found' if repo else 'no repository'}",
        ),
        "dockerfileNonRoot": lambda path: _non_root(view, path),
        "yamlValue": lambda spec: _yaml_value(view, spec),
        "templateVersionsBehind": lambda limit: _template_current(view, int(limit), template_versions),
        "doraLevelAtLeast": lambda level: (
            at_least(dora_level, level),
            f"DORA level {dora_level or 'unknown (no data)'}",
        ),
    }
    for key, handler in handlers.items():
        if key in check:
            return handler(check[key])
    raise PltfError(f"unknown scorecard check {sorted(check)}", 500, "bad_scorecard")


def _template_current(view: ServiceView, limit: int, template_versions: Versions | None) -> tuple[bool, str]:
    """At most `limit` versions behind its template's latest (a service not made from a template passes)."""
    text = view.repo.read(CRUFT_FILE) if view.repo else None
    if text is None:
        return True, "not made from a template"
    try:
        recorded = json.loads(text)
        name, version = template_name(str(recorded["template"])), str(recorded["template_version"])
    except (ValueError, KeyError, TypeError):
        return False, f"{CRUFT_FILE} does not say which template version made it"
    versions = template_versions(name) if template_versions else []
    if version not in versions:
        return False, f"on {name} {version}, a version pltf does not know"
    behind = len(versions) - 1 - versions.index(version)
    return behind <= limit, f"on {name} {version}, {behind} behind {versions[-1]}"


def _non_root(view: ServiceView, path: str) -> tuple[bool, str]:
    text = view.repo.read(path) if view.repo else None
    if text is None:
        return False, f"{path} not found"
    user = dockerfile_user(text)
    if user is None:
        return False, f"{path} sets no USER in its final stage, so it runs as root"
    return user.lower() not in ROOT_USERS, f"{path} runs as {user}"


def _yaml_value(view: ServiceView, spec: dict[str, Any]) -> tuple[bool, str]:
    if view.repo is None:
        return False, f"{spec['file']} not found"
    try:
        value = _dotted(view.repo.yaml(spec["file"]), spec["path"])
    except FileNotFoundError:
        return False, f"{spec['file']} not found"
    except yaml.YAMLError:
        return False, f"{spec['file']} is not valid YAML"
    return bool(value), f"{spec['file']} {spec['path']} = {value!r}"


def scorecard(
    view: ServiceView,
    dora_level: str | None,
    rules_file: str | None = None,
    template_versions: Versions | None = None,
) -> dict[str, Any]:
    data = load_rules(rules_file)
    levels: list[str] = data["levels"]
    results = []
    for rule in data["rules"]:
        passed, detail = evaluate(rule["check"], view, dora_level, template_versions)
        results.append(
            {
                "id": rule["id"],
                "title": rule.get("title", rule["id"]),
                "level": rule["level"],
                "passed": passed,
                "detail": detail,
                "fix": None if passed else rule["fix"],
            }
        )
    reached: str | None = None
    for level in levels:
        if all(r["passed"] for r in results if levels.index(r["level"]) <= levels.index(level)):
            reached = level
        else:
            break
    passed_count = sum(1 for r in results if r["passed"])
    return {"level": reached, "levels": levels, "passed": passed_count, "total": len(results), "rules": results}


__all__ = ["LEVELS", "scorecard", "load_rules"]
