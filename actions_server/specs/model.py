"""The service spec: its model, and the YAML and Terraform (HCL) forms it is read from.

    kind: service
    name: promoapi
    env: prod
    owner: group:default/growth      # optional: else the catalog, --owner, or the token's team
    policy: pii=false                # or a map: {pii: false, exposure: internal}

Optional: `tier`, `exposure`, `slo` (`availability`, `latency_p99_ms`),
`budget` (`monthly_usd`, `cpu`, `memory`), `secrets` (names and the store
paths they come from), `dependsOn`, `experiment` (a cost-attribution label)
and `annotations` (e.g. the data-protection review of a pii=true public
service). A YAML file may hold several documents.

The Terraform form is a `module` block whose `source` is the platform's
module; its arguments are the same fields:

    module "promo" {
      source = "app/platform/service"
      name   = "promoapi"
      env    = "prod"
    }

Both forms give the same `Spec`. A bad spec raises a 422 `PltfError` whose
fields name the file, the line and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import FieldError, PltfError
from ..names import DNS_LABEL, ENTITY_REF

MAX_SPEC_BYTES = 256 * 1024
MAX_DOCUMENTS = 50
TERRAFORM_SOURCES = ("app/platform/service",)
# Terraform's own module arguments that mean nothing to the platform.
TERRAFORM_IGNORED = ("source", "version")

NAME_MAX = 40
ENV_MAX = 20
QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
ANNOTATION_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
STORE_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./:@-]{0,252}$")

Path_ = tuple[str | int, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Policy(_Strict):
    pii: bool | None = None
    exposure: Literal["internal", "public"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        """`pii=false`, `pii=true, exposure=public`: the one-line form."""
        if not isinstance(value, str):
            return value
        result: dict[str, Any] = {}
        for part in re.split(r"[,\s]+", value.strip()):
            if not part:
                continue
            key, sep, raw = part.partition("=")
            if not sep:
                raise ValueError(f"expected key=value pairs such as pii=false, got {part!r}")
            lowered = raw.strip().lower()
            result[key.strip()] = {"true": True, "false": False}.get(lowered, raw.strip())
        return result


class SLO(_Strict):
    availability: float | None = Field(None, gt=0, lt=100, description="Percent of good requests, e.g. 99.9")
    latency_p99_ms: int | None = Field(None, gt=0, le=60_000, description="99% of requests faster than this")


class Budget(_Strict):
    monthly_usd: float | None = Field(None, ge=0, le=10_000_000)
    cpu: str | None = Field(None, description="CPU cores for the namespace, e.g. 2 or 500m")
    memory: str | None = Field(None, description="Memory for the namespace, e.g. 4Gi")

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a Kubernetes quantity such as 2, 500m or 4Gi")
        if isinstance(value, int | float):
            value = format(value, "g")
        if isinstance(value, str) and not QUANTITY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity such as 2, 500m or 4Gi")
        return value


class Secret(_Strict):
    name: str = Field(description="The Kubernetes Secret the ExternalSecret makes")
    path: str = Field(description="Where the value lives in the secret store")
    property: str | None = Field(None, description="One property of that entry; default: all of them")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SECRET_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid secret name (lowercase letters, digits, '-', '.')")
        return value

    @field_validator("path", "property")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not STORE_PATH.match(value) or ".." in value):
            raise ValueError(f"{value!r} is not a secret store path")
        return value


class Spec(_Strict):
    kind: Literal["service"] = "service"
    name: str
    env: str
    owner: str | None = None
    policy: Policy | None = None
    tier: str | None = None
    exposure: Literal["internal", "public"] | None = None
    slo: SLO | None = None
    budget: Budget | None = None
    secrets: list[Secret] = Field(default_factory=list, max_length=50)
    dependsOn: list[str] = Field(default_factory=list, max_length=50)  # noqa: N815 (the spec's spelling)
    experiment: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DNS_LABEL.match(value) or len(value) > NAME_MAX:
            raise ValueError(
                f"{value!r} is not a valid service name: lowercase letters, digits and '-', "
                f"starting with a letter, at most {NAME_MAX} characters"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: str) -> str:
        if not DNS_LABEL.match(value) or len(value) > ENV_MAX:
            raise ValueError(f"{value!r} is not a valid env name (a DNS label of at most {ENV_MAX} characters)")
        return value

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        return None if value is None else normalise_owner(value)

    @field_validator("dependsOn")
    @classmethod
    def _depends(cls, value: list[str]) -> list[str]:
        for item in value:
            if not DNS_LABEL.match(item) or len(item) > NAME_MAX:
                raise ValueError(f"{item!r} is not a service name")
        if len(set(value)) != len(value):
            raise ValueError("lists a dependency twice")
        return value

    @field_validator("secrets", mode="before")
    @classmethod
    def _secret_map(cls, value: Any) -> Any:
        """`secrets: {db-password: prod/promoapi/db}` is short for a list of {name, path}."""
        if isinstance(value, dict):
            return [{"name": k, "path": v} for k, v in value.items()]
        return value

    @field_validator("secrets")
    @classmethod
    def _unique_secrets(cls, value: list[Secret]) -> list[Secret]:
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValueError("names a secret twice")
        return value

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, value: str | None) -> str | None:
        if value is not None and (not value or not LABEL_VALUE.match(value)):
            raise ValueError(f"{value!r} is not a label value (at most 63 letters, digits, '-', '_', '.')")
        return value

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not ANNOTATION_KEY.match(key):
                raise ValueError(f"{key!r} is not an annotation key")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        if self.policy and self.policy.exposure and self.exposure and self.policy.exposure != self.exposure:
            raise ValueError(f"exposure is {self.exposure} but policy says exposure={self.policy.exposure}")
        if self.name in self.dependsOn:
            raise ValueError("a service cannot depend on itself")
        return self

    # -- derived ------------------------------------------------------------

    @property
    def key(self) -> str:
        return f"{self.env}/{self.name}"

    @property
    def namespace(self) -> str:
        return f"{self.name}-{self.env}"

    @property
    def pii(self) -> bool:
        return bool(self.policy and self.policy.pii)

    @property
    def effective_exposure(self) -> str:
        return (self.policy.exposure if self.policy else None) or self.exposure or "internal"

    def document(self) -> dict[str, Any]:
        """The spec as JSON, in the spec's own spelling, without unset fields."""
        return dict(self.model_dump(mode="json", exclude_none=True, exclude_defaults=False))


def normalise_owner(value: str) -> str:
    """`growth`, `group:growth` and `group:default/growth` all become `group:default/growth`."""
    match = ENTITY_REF.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not an owner: use a catalog ref such as group:default/growth")
    kind = (match.group("kind") or "group").lower()
    if kind not in ("group", "user"):
        raise ValueError(f"owner must be a group or a user, not a {kind}")
    return f"{kind}:{match.group('namespace') or 'default'}/{match.group('name')}"


# ------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class SpecDocument:
    spec: Spec
    source: str
    """`file` or `file` plus the document or module it came from."""
    line: int


def spec_error(message: str, fields: list[FieldError]) -> PltfError:
    return PltfError(message, 422, "invalid_spec", fields)


def parse_specs(text: str, filename: str = "spec.yaml", fmt: Literal["yaml", "hcl", "auto"] = "auto") -> list[Spec]:
    return [doc.spec for doc in parse_documents(text, filename, fmt)]


def parse_documents(
    text: str, filename: str = "spec.yaml", fmt: Literal["yaml", "hcl", "auto"] = "auto"
) -> list[SpecDocument]:
    """Every spec in a file, validated; raises a 422 naming file, line and field."""
    if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        raise spec_error(f"{filename}: a spec file may be at most {MAX_SPEC_BYTES // 1024} KiB", [])
    if fmt == "auto":
        fmt = "hcl" if filename.endswith((".tf", ".hcl")) else "yaml"
    raw = _read_hcl(text, filename) if fmt == "hcl" else _read_yaml(text, filename)
    if not raw:
        raise spec_error(
            f"{filename}: no service spec found"
            + (f" (a module with source = {TERRAFORM_SOURCES[0]!r})" if fmt == "hcl" else ""),
            [FieldError("spec", f"{filename}: empty")],
        )
    if len(raw) > MAX_DOCUMENTS:
        raise spec_error(f"{filename}: at most {MAX_DOCUMENTS} specs per file", [])
    documents: list[SpecDocument] = []
    errors: list[FieldError] = []
    for label, value, lines in raw:
        line = lines.get((), 1)
        if not isinstance(value, dict):
            errors.append(FieldError("(document)", f"{filename}:{line}: {label}must be a mapping of spec fields"))
            continue
        try:
            spec = Spec.model_validate(value)
        except ValidationError as exc:
            for err in exc.errors():
                loc: Path_ = tuple(part for part in err.get("loc", ()) if not _is_model_tag(part))
                message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
                errors.append(_field_error(filename, label, loc, lines, message))
            continue
        documents.append(SpecDocument(spec, f"{filename} {label.rstrip(': ')}".strip(), line))
    seen: dict[str, SpecDocument] = {}
    for doc in documents:
        if doc.spec.key in seen:
            errors.append(
                FieldError(
                    "name",
                    f"{filename}:{doc.line}: {doc.spec.key} is already specified at line {seen[doc.spec.key].line}",
                )
            )
        seen.setdefault(doc.spec.key, doc)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise spec_error(f"invalid service spec: {first.message} [field {first.field}]{more}", errors)
    return documents


def _is_model_tag(part: Any) -> bool:
    # pydantic names the union branch or validator in some locations ("function-before[...]").
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "list", "dict"))


def _field_error(filename: str, label: str, loc: Path_, lines: dict[Path_, int], message: str) -> FieldError:
    line = None
    probe = loc
    while line is None:
        line = lines.get(probe)
        if not probe:
            break
        probe = probe[:-1]
    dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[") or "(document)"
    return FieldError(dotted, f"{filename}:{line or 1}: {label}{dotted}: {message}")


# -- YAML ----------------------------------------------------------------------


def _read_yaml(text: str, filename: str) -> list[tuple[str, Any, dict[Path_, int]]]:
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        values = list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise spec_error(
            f"{filename}:{line}: not valid YAML: {exc.problem or exc}",
            [FieldError("(yaml)", f"{filename}:{line}: {exc.problem}")],
        ) from None
    except yaml.YAMLError as exc:
        raise spec_error(f"{filename}: not valid YAML: {exc}", []) from None
    result = []
    many = len([n for n in nodes if n is not None]) > 1
    for n, (node, value) in enumerate(zip(nodes, values, strict=True), start=1):
        if node is None or value is None:
            continue
        lines: dict[Path_, int] = {}
        duplicates: list[FieldError] = []
        _yaml_lines(node, (), lines, duplicates, filename)
        if duplicates:
            raise spec_error(f"invalid service spec: {duplicates[0].message}", duplicates)
        result.append((f"document {n}: " if many else "", value, lines))
    return result


def _yaml_lines(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], duplicates: list[FieldError], filename: str
) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                dotted = ".".join(str(p) for p in (*path, key))
                duplicates.append(
                    FieldError(dotted, f"{filename}:{key_node.start_mark.line + 1}: {dotted} is given twice")
                )
            seen.add(key)
            _yaml_lines(value_node, (*path, key), lines, duplicates, filename)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _yaml_lines(item, (*path, index), lines, duplicates, filename)


# -- Terraform (HCL) -------------------------------------------------------------


def _read_hcl(text: str, filename: str) -> list[tuple[str, Any, dict[Path_, int]]]:
    import hcl2
    from hcl2.utils import SerializationOptions
    from lark.exceptions import LarkError, UnexpectedInput

    options = SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=False, preserve_heredocs=False
    )
    try:
        tree = hcl2.parses_to_tree(text)
        document = hcl2.loads(text, serialization_options=options)
    except UnexpectedInput as exc:
        line = int(getattr(exc, "line", 1) or 1)
        raise spec_error(
            f"{filename}:{line}: not valid HCL near column {getattr(exc, 'column', '?')}",
            [FieldError("(hcl)", f"{filename}:{line}: not valid HCL")],
        ) from None
    except (LarkError, ValueError) as exc:
        raise spec_error(f"{filename}: not valid HCL: {exc}", []) from None
    line_maps = list(_hcl_module_lines(tree))
    modules = [
        (label, body)
        for block in document.get("module", [])
        if isinstance(block, dict)
        for label, body in block.items()
    ]
    result = []
    errors: list[FieldError] = []
    for (label, body), lines in zip(modules, line_maps, strict=False):
        name = _unquote(label) if isinstance(label, str) else str(label)
        if not isinstance(body, dict):
            continue
        source = body.get("source")
        source_text = _unquote(source) if isinstance(source, str) else None
        if source_text is None or source_text.split("?")[0].rstrip("/") not in TERRAFORM_SOURCES:
            continue  # some other module: not ours to read
        value: dict[str, Any] = {}
        for key, item in body.items():
            if key in TERRAFORM_IGNORED:
                continue
            value[key] = _hcl_value(item, (key,), lines, filename, f'module "{name}": ', errors)
        result.append((f'module "{name}": ', value, lines))
    if errors:
        raise spec_error(f"invalid service spec: {errors[0].message}", errors)
    return result


def _unquote(raw: str) -> str | None:
    """The text of a literal HCL string (`"promoapi"`), or None for an expression or a template."""
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"') and "${" not in raw and "%{" not in raw:
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, str) else None
    return None


def _hcl_value(
    item: Any, path: Path_, lines: dict[Path_, int], filename: str, label: str, errors: list[FieldError]
) -> Any:
    if isinstance(item, str):
        text = _unquote(item)
        if text is None:
            dotted = ".".join(str(p) for p in path)
            line = lines.get(path) or lines.get(path[:1], 1)
            errors.append(
                FieldError(
                    dotted, f"{filename}:{line}: {label}{dotted}: must be a literal value, not the expression {item}"
                )
            )
        return text
    if isinstance(item, dict):
        return {
            (_unquote(k) or k): _hcl_value(v, (*path, _unquote(k) or k), lines, filename, label, errors)
            for k, v in item.items()
            if not k.startswith("__")
        }
    if isinstance(item, list):
        return [_hcl_value(v, (*path, i), lines, filename, label, errors) for i, v in enumerate(item)]
    return item


def _hcl_module_lines(tree: Any) -> Iterator[dict[Path_, int]]:
    """For each `module` block, in order: the line of every argument, object key and list item."""
    from lark import Token, Tree

    def first_line(node: Any) -> int:
        if isinstance(node, Token):
            return int(node.line or 1)
        for child in node.children:
            if isinstance(child, Token | Tree):
                return first_line(child)
        return 1

    def key_text(node: Any) -> str:
        tokens = [str(t) for t in node.scan_values(lambda v: isinstance(v, Token))]
        return "".join(t for t in tokens if t != '"')

    def walk(node: Any, path: Path_, out: dict[Path_, int]) -> None:
        if not isinstance(node, Tree):
            return
        if node.data in ("attribute", "object_elem"):
            trees = [c for c in node.children if isinstance(c, Tree)]
            key = key_text(trees[0])
            out[(*path, key)] = first_line(node)
            for child in trees[1:]:
                walk(child, (*path, key), out)
            return
        if node.data == "tuple":
            items = [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]
            for index, child in enumerate(items):
                out[(*path, index)] = first_line(child)
                walk(child, (*path, index), out)
            return
        for child in node.children:
            walk(child, path, out)

    def blocks(node: Any) -> Iterator[Any]:
        if isinstance(node, Tree):
            if node.data == "block":
                yield node
                return
            for child in node.children:
                yield from blocks(child)

    for block in blocks(tree):
        trees = [c for c in block.children if isinstance(c, Tree)]
        if not trees or key_text(trees[0]) != "module":
            continue
        out: dict[Path_, int] = {(): first_line(block)}
        body = next((c for c in trees if c.data == "body"), None)
        if body is not None:
            walk(body, (), out)
        yield out
