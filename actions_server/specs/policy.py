"""The policy engine for service specs: rules are data (YAML), findings explain themselves.

`load_policies(settings)` reads `policies/default.yaml` and merges the org's
file (`PLTF_SPEC_POLICY_FILE`) over it. `evaluate(policies, facts, phase)` runs
the rules of one phase (`spec` or `manifests`) over a facts document, applies
the safe fixes of the rules that fire (filling what is missing, never for a
block), and returns the findings. The condition language is described at the
top of `policies/default.yaml`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config import Settings
from ..errors import PltfError
from ..mappings import deep_merge

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "policies" / "default.yaml"
SEVERITIES = ("info", "warn", "block")
PHASES = ("spec", "manifests")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_OPS = ("exists", "eq", "ne", "in", "gt", "ge", "lt", "le", "matches")
_RULE_KEYS = {"id", "severity", "description", "when", "message", "fix", "phase", "enabled", "source"}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Literal["info", "warn", "block"]
    description: str
    when: Any
    message: str
    fix_text: str | None
    defaults: dict[str, Any]
    phase: Literal["spec", "manifests"]
    source: str

    def to_json(self) -> dict[str, Any]:
        fix: dict[str, Any] = {}
        if self.fix_text:
            fix["text"] = self.fix_text
        if self.defaults:
            fix["defaults"] = self.defaults
        return {
            "id": self.id,
            "severity": self.severity,
            "phase": self.phase,
            "description": self.description,
            "when": self.when,
            "message": self.message,
            "fix": fix or None,
            "autoFix": bool(self.defaults) and self.severity != "block",
            "source": self.source,
        }


@dataclass
class PolicySet:
    rules: list[Rule]
    settings: dict[str, Any]
    teams: dict[str, Any]
    sources: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "policies": [rule.to_json() for rule in self.rules],
            "settings": self.settings,
            "teams": self.teams,
        }


@dataclass
class Finding:
    rule: str
    severity: str
    message: str
    fix: str | None = None
    fixed: bool = False
    service: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "fixed": self.fixed,
            "service": self.service,
        }

    def __str__(self) -> str:
        where = f"{self.service}: " if self.service else ""
        fix = f" (fixed: {self.fix})" if self.fixed else f" (fix: {self.fix})" if self.fix else ""
        return f"{self.severity.upper():5} {self.rule}: {where}{self.message}{fix}"


class PolicyFileError(PltfError):
    pass


def _policy_error(path: str, message: str) -> PolicyFileError:
    return PolicyFileError(f"policy file {path}: {message}", 500, "policy_file_invalid")


# ------------------------------------------------------------------ loading


def load_policies(settings: Settings | None = None, extra: Path | None = None) -> PolicySet:
    """The default policies, with the org's file (if any) merged over them."""
    files = [DEFAULT_POLICY_FILE]
    org = extra or (settings.gitops.spec_policy_file if settings is not None else None)
    if org is not None:
        files.append(org)
    merged_settings: dict[str, Any] = {}
    teams: dict[str, Any] = {}
    rules: dict[str, dict[str, Any]] = {}
    for path in files:
        label = "default" if path == DEFAULT_POLICY_FILE else str(path)
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise _policy_error(label, f"cannot read it: {exc}") from None
        if not isinstance(document, dict):
            raise _policy_error(label, "must be a mapping with settings, teams and policies")
        unknown = set(document) - {"apiVersion", "kind", "metadata", "settings", "teams", "policies"}
        if unknown:
            raise _policy_error(label, f"unknown keys {sorted(unknown)}")
        merged_settings = deep_merge(merged_settings, _mapping(document.get("settings"), label, "settings"))
        for team, entry in _mapping(document.get("teams"), label, "teams").items():
            teams[str(team)] = deep_merge(teams.get(str(team), {}), _mapping(entry, label, f"teams.{team}"))
        policies = document.get("policies") or []
        if not isinstance(policies, list):
            raise _policy_error(label, "policies must be a list")
        for n, raw in enumerate(policies):
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                raise _policy_error(label, f"policies[{n}] needs an id")
            unknown = set(raw) - _RULE_KEYS
            if unknown:
                raise _policy_error(label, f"policy {raw['id']}: unknown keys {sorted(unknown)}")
            rules[raw["id"]] = {**rules.get(raw["id"], {}), **raw, "source": label}
    parsed = [_rule(raw) for raw in rules.values() if raw.get("enabled", True) is not False]
    return PolicySet(parsed, merged_settings, teams, [str(p) for p in files])


def _mapping(value: Any, label: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _policy_error(label, f"{what} must be a mapping")
    return value


def _rule(raw: dict[str, Any]) -> Rule:
    rule_id, source = raw["id"], raw["source"]
    severity = raw.get("severity")
    if severity not in SEVERITIES:
        raise _policy_error(source, f"policy {rule_id}: severity must be one of {SEVERITIES}")
    phase = raw.get("phase", "spec")
    if phase not in PHASES:
        raise _policy_error(source, f"policy {rule_id}: phase must be one of {PHASES}")
    if "when" not in raw or not isinstance(raw.get("message"), str):
        raise _policy_error(source, f"policy {rule_id}: needs `when` and `message`")
    _check_condition(raw["when"], source, rule_id)
    fix = raw.get("fix") or {}
    if isinstance(fix, str):
        fix = {"text": fix}
    if not isinstance(fix, dict) or set(fix) - {"text", "defaults"}:
        raise _policy_error(source, f"policy {rule_id}: fix has `text` and `defaults`")
    defaults = fix.get("defaults") or {}
    if not isinstance(defaults, dict) or not all(str(k).startswith("spec.") for k in defaults):
        raise _policy_error(source, f"policy {rule_id}: fix.defaults maps spec.<field> to a fact or {{value: ...}}")
    return Rule(
        id=rule_id,
        severity=severity,
        description=str(raw.get("description", "")),
        when=raw["when"],
        message=raw["message"],
        fix_text=fix.get("text"),
        defaults=defaults,
        phase=phase,
        source=source,
    )


def _check_condition(cond: Any, source: str, rule_id: str) -> None:
    if not isinstance(cond, dict) or not cond:
        raise _policy_error(source, f"policy {rule_id}: a condition is a mapping, got {cond!r}")
    if "all" in cond or "any" in cond:
        items = cond.get("all", cond.get("any"))
        if not isinstance(items, list):
            raise _policy_error(source, f"policy {rule_id}: all/any take a list")
        for item in items:
            _check_condition(item, source, rule_id)
    elif "not" in cond:
        _check_condition(cond["not"], source, rule_id)
    elif "any_manifest" in cond or "no_manifest" in cond:
        _check_condition(cond.get("any_manifest", cond.get("no_manifest")), source, rule_id)
    elif "fact" in cond:
        ops = [op for op in _OPS if op in cond]
        if len(ops) != 1 or set(cond) - {"fact", *ops}:
            raise _policy_error(source, f"policy {rule_id}: {{fact: ...}} takes exactly one of {_OPS}")
    else:
        raise _policy_error(source, f"policy {rule_id}: unknown condition {sorted(cond)}")


# ----------------------------------------------------------------- evaluating


def lookup(root: Any, path: Any) -> Any:
    """The value at a dotted or list path; `*` gives a list of every match; MISSING when absent."""
    parts: list[Any]
    if isinstance(path, str):
        parts = path.split(".")
    elif isinstance(path, list):
        parts = [lookup(root, p["fact"]) if isinstance(p, dict) and "fact" in p else p for p in path]
    else:
        return MISSING
    values = [root]
    wildcard = False
    for part in parts:
        following = []
        for value in values:
            if part == "*":
                wildcard = True
                if isinstance(value, list):
                    following.extend(value)
            elif isinstance(value, dict) and isinstance(part, str):
                if value.get(part) is not None:
                    following.append(value[part])
            elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
                following.append(value[part])
        values = following
    if wildcard:
        return values
    return values[0] if values else MISSING


def _value(facts: dict[str, Any], spec: Any) -> Any:
    if isinstance(spec, dict) and set(spec) == {"fact"}:
        return lookup(facts, spec["fact"])
    return spec


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is MISSING or (right is MISSING and op != "exists"):
        return op == "exists" and right is False
    try:
        if op == "exists":
            return bool(right)
        if op == "eq":
            return bool(left == right)
        if op == "ne":
            return bool(left != right)
        if op == "in":
            return isinstance(right, list) and left in right
        if op == "matches":
            return isinstance(left, str) and re.search(str(right), left) is not None
        if isinstance(left, bool) or isinstance(right, bool):
            return False
        if op == "gt":
            return bool(float(left) > float(right))
        if op == "ge":
            return bool(float(left) >= float(right))
        if op == "lt":
            return bool(float(left) < float(right))
        if op == "le":
            return bool(float(left) <= float(right))
    except (TypeError, ValueError):
        return False
    return False


def holds(cond: dict[str, Any], facts: dict[str, Any]) -> bool:
    if "all" in cond:
        return all(holds(c, facts) for c in cond["all"])
    if "any" in cond:
        return any(holds(c, facts) for c in cond["any"])
    if "not" in cond:
        return not holds(cond["not"], facts)
    if "any_manifest" in cond:
        return any(holds(cond["any_manifest"], {**facts, "manifest": m}) for m in facts.get("manifests", []))
    if "no_manifest" in cond:
        return not any(holds(cond["no_manifest"], {**facts, "manifest": m}) for m in facts.get("manifests", []))
    op = next(op for op in _OPS if op in cond)
    left = lookup(facts, cond["fact"])
    right = _value(facts, cond[op])
    if isinstance(left, list) and "*" in (cond["fact"] if isinstance(cond["fact"], list) else cond["fact"].split(".")):
        if op == "exists":
            return bool(left) == bool(right)
        return any(_compare(op, item, right) for item in left)
    return _compare(op, left, right)


def render(template: str, facts: dict[str, Any]) -> str:
    def one(match: re.Match[str]) -> str:
        value = lookup(facts, match.group(1))
        if value is MISSING:
            return "(none)"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return _PLACEHOLDER.sub(one, template)


def evaluate(
    policies: PolicySet,
    facts: dict[str, Any],
    phase: Literal["spec", "manifests"],
    service: str = "",
    refresh: Callable[[dict[str, Any]], None] | None = None,
) -> list[Finding]:
    """Runs the rules of one phase, in order. A rule's safe fix changes `facts["spec"]` for the rules after it.

    `refresh` recomputes derived facts (tier, budget numbers) after a fix.
    """
    findings = []
    for rule in policies.rules:
        if rule.phase != phase or not holds(rule.when, facts):
            continue
        message = render(rule.message, facts)
        fix = render(rule.fix_text, facts) if rule.fix_text else None
        fixed = False
        if rule.defaults and rule.severity != "block":
            for target, source in rule.defaults.items():
                if isinstance(source, dict) and "value" in source:
                    value = source["value"]
                else:
                    value = lookup(facts, source["fact"] if isinstance(source, dict) else source)
                if value is not MISSING and _set_default(facts, target, value):
                    fixed = True
            if fixed and refresh is not None:
                refresh(facts)
        if fixed:
            fix = _describe_defaults(rule, facts)
        findings.append(Finding(rule.id, rule.severity, message, fix, fixed, service))
    return findings


def _describe_defaults(rule: Rule, facts: dict[str, Any]) -> str:
    parts = []
    for target in rule.defaults:
        value = lookup(facts, target)
        parts.append(f"{target.removeprefix('spec.')}: {render('{x}', {'x': value})}")
    return "set " + ", ".join(parts)


def _set_default(facts: dict[str, Any], target: str, value: Any) -> bool:
    """Sets a dotted path if nothing is there; True when it did."""
    *parents, leaf = target.split(".")
    node = facts
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            return False
        node = child
    if node.get(leaf) is not None:
        return False
    node[leaf] = copy.deepcopy(value)
    return True
