"""Catalog entities: parsing, validation as Backstage does it, entity refs and relations.

Validation follows `@backstage/catalog-model` (1.10): the default entity
policies (no foreign root fields, field formats, the envelope schema) and then
the schema of the entity's kind. Every rule here has a fixture in
`tests/fixtures/catalog/`, and a test checks that Backstage's own validator
agrees with ours on each.

Unlike Backstage, which stops at the first problem, `validate_entity` returns
every problem, each naming its field (`spec.owner`, `metadata.tags.2`), so a
person fixing a catalog file sees them all at once.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import FieldError

DEFAULT_NAMESPACE = "default"
BACKSTAGE_API_VERSIONS = ("backstage.io/v1alpha1", "backstage.io/v1beta1")
TEMPLATE_API_VERSION = "scaffolder.backstage.io/v1beta3"
ROOT_FIELDS = ("apiVersion", "kind", "metadata", "spec")

# Backstage's own expressions (KubernetesValidatorFunctions, makeValidator). Note
# that the object-name rule lets separators repeat (`a--b` is valid), although
# the descriptor-format docs describe "single" separators: the code is the truth.
_OBJECT_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_LABEL = re.compile(r"^[a-z0-9]+(?:-+[a-z0-9]+)*$")
_KIND = re.compile(r"^[a-zA-Z][a-z0-9A-Z]*$")
_VERSION = re.compile(r"^[a-z0-9A-Z]+$")
_TAG = re.compile(r"^[a-z0-9:+#]+(-[a-z0-9:+#]+)*$")
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):(.*)$", re.DOTALL)
# WHATWG URL parsing (JavaScript's `new URL`) demands a host for these schemes.
_SPECIAL_SCHEMES = ("http", "https", "ws", "wss", "ftp")

NAME_RULE = "1 to 63 characters: letters and digits, separated by '-', '_' or '.'"
NAMESPACE_RULE = "1 to 63 lowercase letters and digits, separated by '-'"
TAG_RULE = "1 to 63 characters of [a-z0-9:+#], separated by '-'"
KEY_RULE = "an optional DNS-name prefix and '/', then 1 to 63 letters and digits separated by '-', '_' or '.'"


def is_object_name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_OBJECT_NAME.match(value))


def is_namespace(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS_LABEL.match(value))


def _is_dns_subdomain(value: str) -> bool:
    return 1 <= len(value) <= 253 and all(is_namespace(label) for label in value.split("."))


def _prefixed(value: object, suffix_ok: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split("/")
    if len(parts) == 1:
        return bool(suffix_ok(parts[0]))
    return len(parts) == 2 and _is_dns_subdomain(parts[0]) and bool(suffix_ok(parts[1]))


def is_api_version(value: object) -> bool:
    return _prefixed(value, lambda v: 1 <= len(v) <= 63 and _VERSION.match(v))


def is_key(value: object) -> bool:
    return _prefixed(value, is_object_name)


def is_tag(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_TAG.match(value))


def is_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    match = _URL_SCHEME.match(value.strip())
    if match is None:
        return False
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme in _SPECIAL_SCHEMES:
        host = rest.lstrip("/\\").split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
        return bool(host) and " " not in host
    return True


def _non_empty_string(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


# -- kinds ---------------------------------------------------------------------


@dataclass(frozen=True)
class KindSpec:
    """The spec fields a kind's JSON schema in @backstage/catalog-model requires and types."""

    api_versions: tuple[str, ...]
    required: tuple[str, ...] = ()
    strings: tuple[str, ...] = ()
    string_lists: tuple[str, ...] = ()
    profile: bool = False


KINDS: dict[str, KindSpec] = {
    "Component": KindSpec(
        BACKSTAGE_API_VERSIONS,
        required=("type", "lifecycle", "owner"),
        strings=("type", "lifecycle", "owner", "system", "subcomponentOf"),
        string_lists=("providesApis", "consumesApis", "dependsOn"),
    ),
    "API": KindSpec(
        BACKSTAGE_API_VERSIONS,
        required=("type", "lifecycle", "owner", "definition"),
        strings=("type", "lifecycle", "owner", "system", "definition"),
    ),
    "System": KindSpec(BACKSTAGE_API_VERSIONS, required=("owner",), strings=("owner", "domain", "type")),
    "Domain": KindSpec(BACKSTAGE_API_VERSIONS, required=("owner",), strings=("owner", "subdomainOf", "type")),
    "Resource": KindSpec(
        BACKSTAGE_API_VERSIONS,
        required=("type", "owner"),
        strings=("type", "owner", "system"),
        string_lists=("dependsOn",),
    ),
    "Group": KindSpec(
        BACKSTAGE_API_VERSIONS,
        required=("type", "children"),
        strings=("type", "parent"),
        string_lists=("children", "members"),
        profile=True,
    ),
    "User": KindSpec(BACKSTAGE_API_VERSIONS, required=("memberOf",), string_lists=("memberOf",), profile=True),
    "Location": KindSpec(BACKSTAGE_API_VERSIONS, strings=("type", "target"), string_lists=("targets",)),
    # From @backstage/plugin-scaffolder-common's Template.v1beta3 schema.
    "Template": KindSpec((TEMPLATE_API_VERSION,), required=("type", "steps"), strings=("type", "owner", "lifecycle")),
}
KIND_BY_LOWER = {kind.lower(): kind for kind in KINDS}


def _check_kind_spec(kind: str, spec: dict[str, Any]) -> Iterator[FieldError]:
    rules = KINDS[kind]
    for name in rules.required:
        if name not in spec:
            yield FieldError(f"spec.{name}", f"is required for a {kind}")
    for name in rules.strings:
        if name in spec and not (isinstance(spec[name], str) and spec[name] != ""):
            yield FieldError(f"spec.{name}", "must be a non-empty string")
    for name in rules.string_lists:
        if name not in spec:
            continue
        value = spec[name]
        if not isinstance(value, list):
            yield FieldError(f"spec.{name}", "must be a list of non-empty strings")
            continue
        for n, item in enumerate(value):
            if not (isinstance(item, str) and item != ""):
                yield FieldError(f"spec.{name}.{n}", "must be a non-empty string")
    if rules.profile and "profile" in spec:
        profile = spec["profile"]
        if not isinstance(profile, dict):
            yield FieldError("spec.profile", "must be an object")
        else:
            for name in ("displayName", "email", "picture"):
                if name in profile and not (isinstance(profile[name], str) and profile[name] != ""):
                    yield FieldError(f"spec.profile.{name}", "must be a non-empty string")
    if kind == "Location" and "presence" in spec and spec["presence"] not in ("required", "optional"):
        yield FieldError("spec.presence", "must be 'required' or 'optional'")
    if kind == "Template":
        yield from _check_template_spec(spec)


def _check_template_spec(spec: dict[str, Any]) -> Iterator[FieldError]:
    steps = spec.get("steps")
    if "steps" in spec and not isinstance(steps, list):
        yield FieldError("spec.steps", "must be a list of steps")
    for n, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            yield FieldError(f"spec.steps.{n}", "must be an object")
        elif not isinstance(step.get("action"), str):
            yield FieldError(f"spec.steps.{n}.action", "is required: the id of the action the step runs")
        elif "if" in step and not isinstance(step["if"], str | bool):
            yield FieldError(f"spec.steps.{n}.if", "must be a string or a boolean")
    parameters = spec.get("parameters")
    if "parameters" in spec and not (
        isinstance(parameters, dict) or (isinstance(parameters, list) and all(isinstance(p, dict) for p in parameters))
    ):
        yield FieldError("spec.parameters", "must be an object, or a list of objects (one per form page)")
    if "output" in spec and not isinstance(spec["output"], dict):
        yield FieldError("spec.output", "must be an object")


# -- the envelope and metadata ------------------------------------------------


def _is_label_value(value: object) -> bool:
    return value == "" or is_object_name(value)


def _is_string(value: object) -> bool:
    return isinstance(value, str)


def _check_metadata(metadata: dict[str, Any]) -> Iterator[FieldError]:
    if "name" not in metadata:
        yield FieldError("metadata.name", "is required")
    elif not is_object_name(metadata["name"]):
        yield FieldError("metadata.name", f"{metadata['name']!r} is not valid: use {NAME_RULE}")
    if "namespace" in metadata and not is_namespace(metadata["namespace"]):
        yield FieldError("metadata.namespace", f"{metadata['namespace']!r} is not valid: use {NAMESPACE_RULE}")
    for name in ("title", "uid", "etag"):
        if name in metadata and not (isinstance(metadata[name], str) and metadata[name] != ""):
            yield FieldError(f"metadata.{name}", "must be a non-empty string")
    if "description" in metadata and not isinstance(metadata["description"], str):
        yield FieldError("metadata.description", "must be a string")
    for group, value_ok, value_rule in (
        ("labels", _is_label_value, f"must be empty or {NAME_RULE}"),
        ("annotations", _is_string, "must be a string"),
    ):
        entries = metadata.get(group)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            yield FieldError(f"metadata.{group}", "must be a map of keys to strings")
            continue
        for key, value in entries.items():
            if not is_key(key):
                yield FieldError(f"metadata.{group}.{key}", f"the key is not valid: use {KEY_RULE}")
            elif not value_ok(value):
                yield FieldError(f"metadata.{group}.{key}", value_rule)
    tags = metadata.get("tags")
    if tags is not None:
        if not isinstance(tags, list):
            yield FieldError("metadata.tags", "must be a list")
        else:
            for n, tag in enumerate(tags):
                if not is_tag(tag):
                    yield FieldError(f"metadata.tags.{n}", f"{tag!r} is not valid: use {TAG_RULE}")
    links = metadata.get("links")
    if links is not None:
        if not isinstance(links, list):
            yield FieldError("metadata.links", "must be a list")
        else:
            for n, link in enumerate(links):
                if not isinstance(link, dict):
                    yield FieldError(f"metadata.links.{n}", "must be an object with a url")
                    continue
                if not is_url(link.get("url")):
                    yield FieldError(f"metadata.links.{n}.url", "must be a URL")
                for name in ("title", "icon", "type"):
                    if name in link and not _non_empty_string(link[name]):
                        yield FieldError(f"metadata.links.{n}.{name}", "must be a non-empty string")


def validate_entity(raw: object) -> list[FieldError]:
    """Every problem with an entity as read from a catalog file; [] when Backstage would accept it."""
    if not isinstance(raw, dict):
        return [FieldError("(root)", "an entity must be a YAML mapping")]
    errors = [
        FieldError(name, "is not a field of an entity (use apiVersion, kind, metadata and spec)")
        for name in raw
        if name not in ROOT_FIELDS
    ]
    api_version, kind, metadata = raw.get("apiVersion"), raw.get("kind"), raw.get("metadata")
    if api_version is None:
        errors.append(FieldError("apiVersion", "is required"))
    elif not is_api_version(api_version):
        errors.append(FieldError("apiVersion", f"{api_version!r} is not a valid apiVersion"))
    known_kind = None
    if kind is None:
        errors.append(FieldError("kind", "is required"))
    elif not (isinstance(kind, str) and len(kind) <= 63 and _KIND.match(kind)):
        errors.append(FieldError("kind", f"{kind!r} is not valid: a letter, then letters and digits"))
    elif kind not in KINDS:
        errors.append(FieldError("kind", f"unknown kind {kind!r}; the catalog knows {', '.join(KINDS)}"))
    else:
        known_kind = kind
    if not isinstance(metadata, dict):
        errors.append(FieldError("metadata", "is required and must be a mapping with a name"))
    else:
        errors.extend(_check_metadata(metadata))
    spec = raw.get("spec")
    if known_kind is not None:
        if api_version not in KINDS[known_kind].api_versions and is_api_version(api_version):
            allowed = " or ".join(KINDS[known_kind].api_versions)
            errors.append(FieldError("apiVersion", f"a {known_kind} needs apiVersion {allowed}"))
        if not isinstance(spec, dict):
            errors.append(FieldError("spec", f"is required for a {known_kind} and must be a mapping"))
        else:
            errors.extend(_check_kind_spec(known_kind, spec))
    elif spec is not None and not isinstance(spec, dict):
        errors.append(FieldError("spec", "must be a mapping"))
    return errors


def with_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A deep copy with the namespace defaulted, as Backstage's DefaultNamespaceEntityPolicy does."""
    entity = copy.deepcopy(raw)
    if not entity["metadata"].get("namespace"):
        entity["metadata"]["namespace"] = DEFAULT_NAMESPACE
    return entity


# -- entity refs -------------------------------------------------------------


@dataclass(frozen=True)
class EntityRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        # Refs compare case-insensitively in Backstage; we keep them lowercase.
        return f"{self.kind}:{self.namespace}/{self.name}".lower()

    @classmethod
    def of(cls, entity: dict[str, Any]) -> EntityRef:
        metadata = entity["metadata"]
        return cls(entity["kind"], metadata.get("namespace") or DEFAULT_NAMESPACE, metadata["name"])


class RefError(ValueError):
    pass


def parse_ref(ref: str, default_kind: str | None = None, default_namespace: str = DEFAULT_NAMESPACE) -> EntityRef:
    """`[kind:][namespace/]name`, as Backstage's parseEntityRef reads it."""
    kind, sep, rest = ref.partition(":")
    if not sep:
        kind, rest = "", ref
    namespace, sep, name = rest.partition("/")
    if not sep:
        namespace, name = "", rest
    kind = kind or default_kind or ""
    if not kind:
        raise RefError(f"{ref!r} needs a kind, such as component:{ref}")
    if not name or not namespace and sep:
        raise RefError(f"{ref!r} is not an entity ref ([kind:][namespace/]name)")
    return EntityRef(kind, namespace or default_namespace, name)


def page_url(ref: str | EntityRef) -> str:
    """`/catalog/{namespace}/{kind}/{name}` of an entity ref: its page on this server's catalog."""
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    return f"/catalog/{parsed.namespace}/{parsed.kind}/{parsed.name}".lower()


# -- relations ---------------------------------------------------------------


@dataclass(frozen=True)
class Relation:
    source: str
    type: str
    target: str


# (kind, spec field, default target kind, relation, reverse relation). The
# table of Backstage's BuiltinKindsEntityProcessor.
RELATION_RULES: tuple[tuple[str, str, str | None, str, str], ...] = (
    ("Component", "owner", "Group", "ownedBy", "ownerOf"),
    ("Component", "system", "System", "partOf", "hasPart"),
    ("Component", "subcomponentOf", "Component", "partOf", "hasPart"),
    ("Component", "providesApis", "API", "providesApi", "apiProvidedBy"),
    ("Component", "consumesApis", "API", "consumesApi", "apiConsumedBy"),
    ("Component", "dependsOn", None, "dependsOn", "dependencyOf"),
    ("Component", "dependencyOf", None, "dependencyOf", "dependsOn"),
    ("API", "owner", "Group", "ownedBy", "ownerOf"),
    ("API", "system", "System", "partOf", "hasPart"),
    ("Resource", "owner", "Group", "ownedBy", "ownerOf"),
    ("Resource", "system", "System", "partOf", "hasPart"),
    ("Resource", "dependsOn", None, "dependsOn", "dependencyOf"),
    ("Resource", "dependencyOf", None, "dependencyOf", "dependsOn"),
    ("System", "owner", "Group", "ownedBy", "ownerOf"),
    ("System", "domain", "Domain", "partOf", "hasPart"),
    ("Domain", "owner", "Group", "ownedBy", "ownerOf"),
    ("Domain", "subdomainOf", "Domain", "partOf", "hasPart"),
    ("Group", "parent", "Group", "childOf", "parentOf"),
    ("Group", "children", "Group", "parentOf", "childOf"),
    ("Group", "members", "User", "hasMember", "memberOf"),
    ("User", "memberOf", "Group", "memberOf", "hasMember"),
    ("Template", "owner", "Group", "ownedBy", "ownerOf"),
)


@dataclass
class Relations:
    relations: list[Relation] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)


def relations_of(entity: dict[str, Any]) -> Relations:
    """The relations an entity's spec declares, each with its reverse, as Backstage emits them."""
    out = Relations()
    self_ref = EntityRef.of(entity)
    spec = entity.get("spec") or {}
    for kind, field_name, default_kind, forward, reverse in RELATION_RULES:
        if kind != entity["kind"] or field_name not in spec:
            continue
        value = spec[field_name]
        targets = value if isinstance(value, list) else [value]
        for n, target in enumerate(targets):
            where = f"spec.{field_name}" + (f".{n}" if isinstance(value, list) else "")
            if not isinstance(target, str):
                continue
            try:
                target_ref = parse_ref(target, default_kind, self_ref.namespace)
            except RefError as exc:
                out.errors.append(FieldError(where, str(exc)))
                continue
            out.relations.append(Relation(str(self_ref), forward, str(target_ref)))
            out.relations.append(Relation(str(target_ref), reverse, str(self_ref)))
    return out


# -- YAML as Backstage reads it ----------------------------------------------


# libyaml's parser, where PyYAML was built with it (its wheels are): a catalog file parses about four
# times faster than with the pure-Python one, the largest part of registering an entity. The scalars
# are still resolved and constructed by the Python classes below, so the results are the same.
_Parser: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Yaml12Loader(_Parser):  # type: ignore[misc]
    """PyYAML speaks YAML 1.1, where `on`, `yes` and `2024-01-01` are not strings.

    Backstage reads catalog files with the `yaml` package (YAML 1.2 core
    schema), so a component named `on` is a string there; we resolve scalars
    the same way, and refuse duplicate keys as it does.
    """


_YAML11_ONLY = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
}
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML11_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.constructor.SafeConstructor, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 16) if text.startswith("0x") else int(text)


def _construct_mapping(loader: yaml.constructor.SafeConstructor, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}: map keys must be unique", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_documents(text: str) -> list[Any]:
    """Every YAML document of a catalog file (empty documents dropped); raises yaml.YAMLError."""
    return [doc for doc in yaml.load_all(text, Loader=_Yaml12Loader) if doc is not None]  # noqa: S506 - a SafeLoader subclass
