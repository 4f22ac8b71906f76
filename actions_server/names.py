"""Names that must be safe as DNS labels, repository names and catalog entity names."""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ENTITY_REF = re.compile(
    r"^(?:(?P<kind>[A-Za-z]+):)?(?:(?P<namespace>[a-z0-9][-a-z0-9._]*)/)?(?P<name>[A-Za-z0-9][-A-Za-z0-9._]*)$"
)


def dns_name(words: list[str]) -> str:
    """`["Users", "API"]` → `users-api`: the words joined into one DNS-safe label."""
    joined = "-".join(words).lower()
    label = re.sub(r"[^a-z0-9]+", "-", joined).strip("-")
    return re.sub(r"-{2,}", "-", label)


def is_dns_label(name: str) -> bool:
    return bool(DNS_LABEL.match(name))


MAX_NAME_LENGTH = 63  # one DNS label: the name is also a host name, a namespace and a Kubernetes object's
NAME_RULE = (
    f"a name is 1 to {MAX_NAME_LENGTH} lowercase letters, digits and hyphens, "
    "starting with a letter and not ending with a hyphen"
)


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a service (the rule and the limit), or None when it can."""
    if not name:
        return f"is empty: {NAME_RULE}"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    if not is_dns_label(name):
        return f"is not DNS-safe: {NAME_RULE}"
    return None


def owner_slug(owner_ref: str) -> str:
    """`group:default/platform-team` → `platform-team`: the name part of an entity ref."""
    match = ENTITY_REF.match(owner_ref.strip())
    return match.group("name") if match else owner_ref
