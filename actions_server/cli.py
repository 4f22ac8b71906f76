"""The `pltf` command line, over the same engine as the server."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from .config import Settings
from .errors import PltfError

app = typer.Typer(
    name="pltf",
    help="pltf: the golden path behind your developer portal's Create button.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: the rich one writes `<bool>` after flags that take no value.
    rich_markup_mode=None,
)
templates_app = typer.Typer(help="List and check the templates in cookiecutters/.", invoke_without_command=True)
tokens_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
create_app = typer.Typer(help="Create things on the golden path.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")
app.add_typer(tokens_app, name="tokens")
app.add_typer(create_app, name="create")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _backend() -> Any:
    from .client import backend_from_environment

    return backend_from_environment()


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def _show_log(line: dict[str, Any]) -> None:
    time = (line.get("time") or "")[11:19]
    marker = {"warning": "!", "error": "x"}.get(line.get("level", ""), "·")
    step = f"[{line['step']}] " if line.get("step") else ""
    typer.echo(f"  {time} {marker} {step}{line.get('message', '')}", err=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: PLTF_HOST or 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: PLTF_PORT or 8787]")] = None,
) -> None:
    """Start the action server."""
    import uvicorn

    from .app import create_app
    from .auth import TokenFileError, load_tokens
    from .db import connect
    from .forges.embedded import git_root
    from .http_timeouts import header_timeout_protocol
    from .storage import storage_problem

    asked = {"host": host, "port": port}
    settings = Settings().replace(**{name: value for name, value in asked.items() if value is not None})
    problem = storage_problem(settings, git_root(settings))
    if problem is not None:
        raise PltfError(f"cannot start: {problem}", 1, "storage")
    try:
        _, generated = load_tokens(settings)
    except TokenFileError as exc:
        raise PltfError(f"cannot start: {exc}", 1, "config") from None
    _upgrade_schema_in_a_child_process()
    application = create_app(settings)  # configures the JSON log first
    # Checked here, before serving, a database pltf cannot use stops it with one line rather than a
    # traceback from the lifespan (which then finds the schema at the newest revision in one read).
    connect(settings.storage.resolved_database_url).dispose()
    typer.echo(
        f"pltf action server on {settings.server.base_url} (data: {settings.storage.data_dir.resolve()})", err=True
    )
    if generated is not None:
        typer.echo(f"API token for local use: {generated.resolve()} (mode 0600)", err=True)
    uvicorn.run(
        application,
        host=settings.server.host,
        port=settings.server.port,
        http=header_timeout_protocol(settings.server.header_timeout_seconds),
        log_level="warning",
        access_log=False,
    )


def _upgrade_schema_in_a_child_process() -> None:
    """`pltf db upgrade` in a process of its own: the server then finds the newest revision with one SELECT
    and never loads Alembic and Mako (6-7 MiB of its resident memory, for work done once per release)."""
    import subprocess
    from pathlib import Path

    # This very code, wherever the child starts (-P: not a checkout in the working directory).
    package_root = str(Path(__file__).resolve().parent.parent)
    child = f"import sys; sys.path.insert(0, {package_root!r}); from actions_server.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-P", "-c", child, "db", "upgrade", "--json"], capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        return
    said = done.stderr.strip().splitlines()
    if len(said) == 1 and said[0].startswith("pltf: error: "):
        # A refusal the child put in one line, secrets scrubbed: said as this command's own.
        raise PltfError(said[0].removeprefix("pltf: error: "), 1, "database")
    # Anything else (a traceback) is shown whole, as it was when the upgrade ran in this process.
    sys.stderr.write(done.stderr)
    raise PltfError(f"the database schema upgrade failed (exit {done.returncode}; its output is above)", 1, "database")


@app.command()
def actions(as_json: JsonOption = False) -> None:
    """List the actions the server offers."""
    found = _backend().actions()
    if as_json:
        _print_json({"actions": found})
        return
    width = max((len(a["id"]) for a in found), default=0)
    for action in found:
        typer.echo(f"{action['id']:<{width}}  {action['description']}")


@templates_app.callback()
def templates(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the templates and their values."""
    if ctx.invoked_subcommand is not None:
        return
    found = _backend().templates()
    if as_json:
        _print_json({"templates": found})
        return
    for template in found:
        keys = ", ".join(template["schema"].get("properties", {}))
        typer.echo(f"{template['name']} {template['version']}  {template['description']}")
        typer.echo(f"  values: {keys}")


@templates_app.command("check")
def templates_check(
    names: Annotated[list[str] | None, typer.Argument(help="Templates in cookiecutters/ (default: all)")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Skip the generated service's own test suite")] = False,
    only: Annotated[
        str | None,
        typer.Option("--only", help="Run one check alone: hostile-values (values stay data in every file)"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Render each template with every choice and run every validator on the result."""
    from dataclasses import asdict

    from .templates.check import ERROR, check_hostile_values, check_template
    from .templates.hostile_values import TOOL as HOSTILE_TOOL

    if only not in (None, HOSTILE_TOOL):
        raise PltfError(f"--only takes {HOSTILE_TOOL}, not {only!r}", 2, "usage")
    root = Settings().templates.templates_dir
    chosen = names or sorted(p.parent.name for p in root.glob("*/cookiecutter.json"))
    report: dict[str, list[dict[str, Any]]] = {}
    hostile: dict[str, dict[str, Any]] = {}
    for name in chosen:
        if not (root / name / "cookiecutter.json").is_file():
            raise PltfError(f"no template named {name!r} in {root}", 2, "usage")
        if not as_json:
            typer.echo(f"checking {name} …", err=True)
        findings = [] if only else check_template(root / name, run_service_tests=not fast)
        hostile_findings, hostile_report = check_hostile_values(root / name)
        findings += hostile_findings
        hostile[name] = {
            "renders": hostile_report.renders,
            "seconds": round(hostile_report.seconds, 2),
            "skipped": hostile_report.skipped,
        }
        report[name] = [asdict(finding) for finding in findings]
        if not as_json:
            for finding in findings:
                typer.echo(f"  {finding}")
            typer.echo(f"  {HOSTILE_TOOL}: {hostile_report.renders} renders in {hostile_report.seconds:.1f}s", err=True)
            errors = sum(f.severity == ERROR for f in findings)
            typer.echo(f"{name}: {'FAILED' if errors else 'ok'} ({errors} errors, {len(findings) - errors} warnings)")
    if as_json:
        _print_json({"templates": report, "hostileValues": hostile})
    failed = [name for name, findings in report.items() if any(f["severity"] == ERROR for f in findings)]
    if failed:
        raise PltfError(f"template check failed: {', '.join(failed)}", 1, "check_failed")


def parse_assignments(plain: list[str], as_json: list[str]) -> dict[str, Any]:
    """`a.b=c` assignments into a nested dict; `--set-json` values are parsed as JSON."""
    result: dict[str, Any] = {}
    for raw, is_json in [(item, False) for item in plain] + [(item, True) for item in as_json]:
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise PltfError(f"expected key=value, got {raw!r}", 2, "usage")
        parsed: Any = value
        if is_json:
            try:
                parsed = json.loads(value)
            except ValueError:
                raise PltfError(f"--set-json {key}: not valid JSON", 2, "usage") from None
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise PltfError(f"{key}: {part} is already set to a value", 2, "usage")
            node = child
        node[leaf] = parsed
    return result


@app.command()
def run(
    action: Annotated[str, typer.Argument(help="Action id, e.g. cookiecutter:render")],
    set_: Annotated[list[str], typer.Option("--set", help="Input key=value; dots nest: values.name=users")] = [],  # noqa: B006
    set_json: Annotated[list[str], typer.Option("--set-json", help="Input key=JSON")] = [],  # noqa: B006
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run without side effects")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe key")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run an action, against PLTF_URL or in this process, and show its progress."""
    params = parse_assignments(set_, set_json)
    result = _backend().run(action, params, dry_run, idempotency_key, None if as_json else _show_log)
    if as_json:
        _print_json(result)
    else:
        _summarise(result)
    if result["status"] != "succeeded":
        error = result.get("error") or {}
        raise PltfError(f"{action} {result['status']}: {error.get('message', 'no reason given')}", 1, "run_failed")


@create_app.command("service")
def create_service(
    words: Annotated[list[str], typer.Argument(help="Words of the name: `users api` becomes users-api")],
    owner: Annotated[str, typer.Option(help="Owning group, as a catalog ref")] = "group:default/platform-team",
    description: Annotated[str | None, typer.Option(help="One sentence on what it does")] = None,
    system: Annotated[str | None, typer.Option(help="Catalog system")] = None,
    template: Annotated[str, typer.Option(help="Template in cookiecutters/")] = "python-service",
    set_: Annotated[list[str], typer.Option("--set", help="Template value key=value")] = [],  # noqa: B006
    repo_url: Annotated[str | None, typer.Option(help="host?owner=o&repo=r; default: the embedded forge")] = None,
    preview: Annotated[bool, typer.Option(help="Wire a preview environment")] = True,
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe key")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render and check only; create nothing")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a service: render it, create its repository, register it, and wire a preview."""
    from .names import dns_name, name_problem

    given = " ".join(words)
    name = dns_name(words)
    problem = name_problem(name)
    if problem:
        raise PltfError(f"{given!r} gives the name {name!r}, which {problem}", 2, "usage")
    if name != "-".join(words).lower() and not as_json:
        typer.echo(f"the name is {name} (from {given!r}: lowercase, other characters become hyphens)", err=True)
    backend = _backend()
    params: dict[str, Any] = {"name": name, "owner": owner, "template": template, "preview": preview}
    params.update({k: v for k, v in (("description", description), ("system", system), ("repoUrl", repo_url)) if v})
    params["values"] = parse_assignments(set_, [])
    where = "" if backend.server_url else " in this process (PLTF_URL is unset: no server is used)"
    started = False

    def show(line: dict[str, Any]) -> None:
        # Said with the first log line: input refused before the run starts is then one line of error alone.
        nonlocal started
        if not started:
            typer.echo(f"Creating service {name} from {template}{where}", err=True)
            started = True
        _show_log(line)

    result = backend.run("service:create", params, dry_run, idempotency_key, None if as_json else show)
    if as_json:
        _print_json(result)
    elif result["status"] == "succeeded":
        _created(name, result.get("output") or {}, backend.server_url)
    if result["status"] != "succeeded":
        error = result.get("error") or {}
        reason = error.get("message", "no reason given")
        raise PltfError(f"service:create {result['status']}: {reason}", 1, "run_failed")


def _created(name: str, output: dict[str, Any], server_url: str | None) -> None:
    typer.echo(f"Created {name}")
    if server_url:
        for link in output.get("links", []):
            typer.echo(f"  {link['title']:<18} {link['url']}")
        if output.get("remoteUrl"):
            typer.echo(f"  {'git clone':<18} git clone {output['remoteUrl']}")
        return
    # In-process: the links would name a server that is not running; say what makes them work instead.
    typer.echo("  Ran in this process: its links answer once `pltf serve` runs on the same PLTF_DATA_DIR")
    typer.echo("  (or set PLTF_URL to a running server to create through it).")
    if output.get("previewId"):
        typer.echo(
            f"  Its preview {output['previewId']} keeps running (`pltf serve` serves and adopts it); "
            f"stop it with: pltf previews destroy {output['previewId']}"
        )


def _summarise(run_result: dict[str, Any]) -> None:
    if run_result["status"] != "succeeded":
        return
    typer.echo(f"{run_result['action']} succeeded (run {run_result['id']})")
    for key, value in (run_result.get("output") or {}).items():
        if key == "directoryContents":
            typer.echo(f"  {key}: {len(value)} files")
        elif isinstance(value, list):
            typer.echo(f"  {key}: {len(value)} items")
        else:
            typer.echo(f"  {key}: {value}")


def settings_table() -> str:
    """The configuration reference as Markdown, a table per section (the README's is this, verbatim)."""
    from .config import SECTIONS, settings_reference

    blocks = []
    for section_type in SECTIONS.values():
        rows = [row for row in settings_reference() if row[0] == section_type.title]
        lines = [
            f"**{section_type.title}**: {section_type.__doc__}",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
        ]
        lines += [f"| `{variable}` | {default} | {meaning} |" for _, variable, default, meaning in rows]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


@app.command()
def config(
    reference: Annotated[bool, typer.Option("--reference", help="Print the reference table (Markdown)")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the effective configuration (secrets masked), or the reference of every setting."""
    if reference:
        typer.echo(settings_table(), nl=False)
        return
    from .sandbox import sandbox_summary

    settings = Settings()
    # By flat name, as the variables are spelled (PLTF_<NAME>), section after section.
    effective = {
        name: value for section in settings.sections() for name, value in json.loads(section.model_dump_json()).items()
    }
    summary = sandbox_summary(settings)
    in_use = {"sandbox_in_use": summary["sandbox"]}
    if "sandboxProblem" in summary:
        in_use["sandbox_problem"] = summary["sandboxProblem"]
    if as_json:
        _print_json({**effective, **in_use})
        return
    for name, value in effective.items():
        typer.echo(f"PLTF_{name.upper()}={'' if value is None else value}")
    for name, value in in_use.items():
        typer.echo(f"# {name}: {value}")


@app.command()
def openapi(
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file instead of stdout")] = None,
) -> None:
    """Print the server's OpenAPI document (the API entity's definition)."""
    from pathlib import Path

    from .app import create_app

    document = json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"
    if output:
        Path(output).write_text(document)
    else:
        typer.echo(document, nl=False)


@tokens_app.command("new")
def tokens_new(
    name: Annotated[str, typer.Argument(help="Who the token is for, e.g. backstage")],
    action: Annotated[list[str], typer.Option("--action", help="Action id or pattern it may run")] = ["*"],  # noqa: B006
    team: Annotated[str | None, typer.Option(help="Catalog group the caller belongs to")] = None,
) -> None:
    """Print a new token, and the entry for the token file (which keeps only its hash)."""
    import yaml

    from .auth import hash_token, new_token

    token = new_token()
    entry: dict[str, Any] = {"name": name, "sha256": hash_token(token), "actions": action}
    if team:
        entry["team"] = team
    typer.echo(f"token (shown once): {token}", err=True)
    typer.echo(yaml.safe_dump({"tokens": [entry]}, sort_keys=False), nl=False)


# -- pltf backstage: Backstage software templates generated from cookiecutters --------------

backstage_app = typer.Typer(
    help="Backstage integration: software templates for the Create button.", no_args_is_help=True
)
app.add_typer(backstage_app, name="backstage")


@backstage_app.command("template")
def backstage_template(
    cookiecutter_dir: Annotated[
        str, typer.Argument(help="A cookiecutter directory, e.g. cookiecutters/python-service")
    ],
    output: Annotated[str | None, typer.Option("-o", "--output", help="Write to this file instead of stdout")] = None,
    name: Annotated[str | None, typer.Option(help="Template entity name [default: the directory name]")] = None,
    owner: Annotated[str, typer.Option(help="Owner of the Template entity")] = "group:default/platform-team",
    repo_host: Annotated[
        list[str], typer.Option("--repo-host", help="RepoUrlPicker allowedHosts entry (repeatable)")
    ] = [],  # noqa: B006
    roadie: Annotated[
        bool,
        typer.Option(
            "--roadie",
            help="Call pltf through Roadie's http:backstage:request and the proxy, for a Backstage without pltf's module",
        ),
    ] = False,
) -> None:
    """Generate a scaffolder.backstage.io/v1beta3 Template that calls service:create for a cookiecutter."""
    from pathlib import Path

    from .templates.backstage import TemplateOptions, load_cookiecutter, render

    directory = Path(cookiecutter_dir)
    options = TemplateOptions(
        name=name,
        owner=owner,
        repo_hosts=repo_host,
        source=f"cookiecutters/{directory.resolve().name}",
        roadie=roadie,
    )
    document = render(load_cookiecutter(directory), options)
    if output:
        Path(output).write_text(document, encoding="utf-8")
    else:
        typer.echo(document, nl=False)


# -- previews: pltf previews list | gc | destroy ID ------------------------------

previews_app = typer.Typer(help="Show and clean preview environments.", no_args_is_help=True)
app.add_typer(previews_app, name="previews")


@previews_app.command("list")
def previews_list(
    include_all: Annotated[bool, typer.Option("--all", help="Also failed, destroyed and expired ones")] = False,
    as_json: JsonOption = False,
) -> None:
    """List previews (active ones unless --all)."""
    from .previews.commands import list_previews

    found = list_previews(include_all)
    if as_json:
        _print_json({"previews": found})
        return
    if not found:
        typer.echo("no previews", err=True)
    for p in found:
        typer.echo(f"{p['id']}  {p['name']:<28} {p['status']:<9} {p['previewUrl']}  expires {p['expiresAt']}")


@previews_app.command("gc")
def previews_gc(as_json: JsonOption = False) -> None:
    """Remove expired and dead previews, and leftovers no preview owns."""
    from .previews.commands import gc

    removed, lines = gc()
    if as_json:
        _print_json({"removed": removed, "log": lines})
        return
    for line in lines:
        typer.echo(f"  {line}", err=True)
    typer.echo(f"removed {len(removed)}")


@previews_app.command("destroy")
def previews_destroy(
    preview_id: Annotated[str, typer.Argument(help="Preview id (pv-…) or name (users-api-pr-7)")],
    as_json: JsonOption = False,
) -> None:
    """Destroy a preview (runs preview:destroy); its URL stops answering."""
    result = _backend().run("preview:destroy", {"previewId": preview_id}, False, None, None if as_json else _show_log)
    if as_json:
        _print_json(result)
    elif result["status"] == "succeeded":
        typer.echo(f"{result['output']['previewId']} {result['output']['status']}")
    if result["status"] != "succeeded":
        error = result.get("error") or {}
        reason = error.get("message", "no reason given")
        raise PltfError(f"preview:destroy {result['status']}: {reason}", 1, "run_failed")


# -- the database: pltf db current | upgrade | revision -m MESSAGE -------------------

db_app = typer.Typer(help="The database's schema revision; `pltf serve` upgrades it on start.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _database_name(url: str) -> str:
    """Which database, for the reader: never the user, password or query, which may hold a secret."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return f"{parsed.get_backend_name()} {parsed.host + '/' if parsed.host else ''}{parsed.database or ''}"


@db_app.command("current")
def db_current(as_json: JsonOption = False) -> None:
    """Print the database's schema revision and the newest this pltf has; change nothing."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from .db import open_engine
    from .migrations import current, head

    url = Settings().storage.resolved_database_url
    parsed = make_url(url)
    revision = None
    # Opening a SQLite file that is not there would make one.
    if parsed.get_backend_name() != "sqlite" or (parsed.database and Path(parsed.database).exists()):
        engine = open_engine(url)
        try:
            revision = current(engine)
        finally:
            engine.dispose()
    newest = head()
    if as_json:
        _print_json(
            {"database": _database_name(url), "current": revision, "head": newest, "upToDate": revision == newest}
        )
    elif revision == newest:
        typer.echo(f"{revision} (the newest)")
    elif revision is None:
        typer.echo(f"none: an empty database, or one from before migrations (the newest is {newest})")
    else:
        typer.echo(f"{revision} (the newest is {newest}: run pltf db upgrade, or start the server)")


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Bring the database's schema to the newest revision (as `pltf serve` does on start), keeping its rows."""
    from .client import quiet_logging
    from .db import open_engine
    from .migrations import head, upgrade
    from .redact import Redactor

    settings = Settings()
    quiet_logging(settings, Redactor())
    if not settings.storage.database_url:
        settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(settings.storage.resolved_database_url)
    try:
        before = upgrade(engine)
    finally:
        engine.dispose()
    after = head()
    if as_json:
        _print_json(
            {"database": _database_name(settings.storage.resolved_database_url), "before": before, "after": after}
        )
    elif before == after:
        typer.echo(f"{after}: already the newest")
    else:
        typer.echo(f"{after}: upgraded from {before or 'an empty database, or one from before migrations'}")


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("-m", "--message", help="What the revision changes, in a few words")],
) -> None:
    """For developers: write the next revision, from what the tables declared in code add to the revisions."""
    from .migrations import write_revision
    from .services import declared_tables

    typer.echo(write_revision(message, declared_tables()))


# -- service specs: pltf plan SPEC | pltf apply SPEC | pltf policies list ---------

policies_app = typer.Typer(help="The policies service specs are held to.", no_args_is_help=True)
app.add_typer(policies_app, name="policies")

SpecArgument = Annotated[str, typer.Argument(help="Spec file: YAML (.yaml) or Terraform (.tf); - reads stdin")]
OwnerOption = Annotated[str | None, typer.Option(help="Owning team when the spec names none and the catalog has none")]
FormatOption = Annotated[str, typer.Option("--format", help="auto (by extension), yaml or hcl")]


def _spec_input(spec_file: str, owner: str | None, spec_format: str) -> dict[str, Any]:
    from pathlib import Path

    if spec_format not in ("auto", "yaml", "hcl"):
        raise PltfError(f"--format must be auto, yaml or hcl, not {spec_format!r}", 2, "usage")
    try:
        text = sys.stdin.read() if spec_file == "-" else Path(spec_file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PltfError(f"cannot read {spec_file}: {exc}", 2, "usage") from None
    name = "stdin.yaml" if spec_file == "-" else Path(spec_file).name
    params: dict[str, Any] = {"spec": text, "filename": name, "format": spec_format}
    if owner:
        params["owner"] = owner
    return params


def _show_provision(output: dict[str, Any], planning: bool) -> None:
    for service in output.get("services", []):
        owner = service.get("owner")
        whose = f"owner {owner} (from {service.get('ownerSource')})" if owner else "no owner found"
        typer.echo(f"{service['service']}  {whose}  -> {service['directory']}/")
    marks = {"info": "i", "warn": "!", "block": "x"}
    for finding in output.get("findings", []):
        fix = finding.get("fix")
        note = f"\n      {'fixed' if finding.get('fixed') else 'fix'}: {fix}" if fix else ""
        typer.echo(
            f"  {marks.get(finding['severity'], '?')} {finding['severity']:<5} {finding['rule']}: {finding['message']}{note}"
        )
    if output.get("diff"):
        typer.echo(output["diff"], nl=False)
    changed = output.get("changedFiles", [])
    if planning:
        verdict = "blocked: nothing can be applied" if output.get("blocked") else f"{len(changed)} files would change"
        typer.echo(f"plan: {verdict} in {output.get('repository')}")
    elif output.get("commit"):
        typer.echo(f"applied: {len(changed)} files in commit {output['commit'][:12]} to {output.get('repository')}")
    else:
        typer.echo("applied: nothing changed, no commit")


def _provision(
    spec_file: str, owner: str | None, spec_format: str, dry_run: bool, as_json: bool, key: str | None
) -> None:
    params = _spec_input(spec_file, owner, spec_format)
    result = _backend().run("service:provision", params, dry_run, key, None)
    if as_json:
        _print_json(result)
    elif result["status"] == "succeeded":
        _show_provision(result.get("output") or {}, dry_run)
    if result["status"] != "succeeded":
        error = result.get("error") or {}
        if not as_json:
            for field in error.get("fields", []):
                typer.echo(f"  x {field['field']}: {field['message']}", err=True)
        raise PltfError(error.get("message", f"service:provision {result['status']}"), 1, "run_failed")
    if dry_run and (result.get("output") or {}).get("blocked"):
        raise PltfError("the plan is blocked by policy (see the findings above)", 1, "policy_blocked")


@app.command("plan")
def plan(
    spec_file: SpecArgument,
    owner: OwnerOption = None,
    spec_format: FormatOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Show the findings and the diff a service spec would make in the GitOps repository; write nothing."""
    _provision(spec_file, owner, spec_format, True, as_json, None)


@app.command("apply")
def apply(
    spec_file: SpecArgument,
    owner: OwnerOption = None,
    spec_format: FormatOption = "auto",
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe key")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a service spec's manifests to the GitOps repository as one commit (none if nothing changed)."""
    _provision(spec_file, owner, spec_format, False, as_json, idempotency_key)


@policies_app.command("list")
def policies_list(as_json: JsonOption = False) -> None:
    """Print the policies in force: rule, severity, what it checks and its fix; then tiers and team limits."""
    result = _backend().run("service:policies", {}, False, None, None)
    if result["status"] != "succeeded":
        error = result.get("error") or {}
        raise PltfError(error.get("message", "service:policies failed"), 1, "run_failed")
    output = result["output"]
    if as_json:
        _print_json(output)
        return
    typer.echo(f"policies from {', '.join(output['sources'])}")
    for rule in output["policies"]:
        auto = " (auto-fixed)" if rule.get("autoFix") else ""
        typer.echo(f"  {rule['severity']:<5} {rule['id']:<34} {rule['description']}{auto}")
    tiers = output["settings"].get("tiers") or {}
    for name, tier in tiers.items():
        slo, budget = tier.get("slo", {}), tier.get("budget", {})
        typer.echo(
            f"  tier {name}: {slo.get('availability')}% / p99 {slo.get('latency_p99_ms')} ms; "
            f"${budget.get('monthly_usd')}/month, {budget.get('cpu')} CPU, {budget.get('memory')}"
        )


def _update_one(backend: Any, repository: str, dry_run: bool) -> dict[str, Any]:
    """One repository's update as a table row; a failure is a row too, so one bad repository stops no other."""
    result = backend.run("template:update", {"repository": repository, "dryRun": dry_run}, False, None, None)
    if result["status"] != "succeeded":
        error = result.get("error") or {}
        return {"repository": repository, "status": "failed", "error": error.get("message", result["status"])}
    return {"repository": repository, **(result.get("output") or {})}


@app.command("update")
def update(
    repository: Annotated[str | None, typer.Argument(help="owner/name or clone URL of one repository")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every repository made from --template")] = False,
    template: Annotated[str | None, typer.Option("--template", help="The template, with --all")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Merge and report; push and open nothing")] = False,
    parallel: Annotated[int, typer.Option(min=1, max=32, help="Repositories updated at once")] = 4,
    as_json: JsonOption = False,
) -> None:
    """Update repositories to their template's latest version, each as a change request keeping its edits."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    if every == (repository is not None) or (every and not template):
        raise PltfError("give one REPOSITORY, or --all with --template NAME", 2, "usage")
    backend = _backend()
    if every:
        listed = backend.run("template:services", {"template": template}, False, None, None)
        if listed["status"] != "succeeded":
            raise PltfError((listed.get("error") or {}).get("message", "template:services failed"), 1, "run_failed")
        targets = [service["repository"] for service in listed["output"]["services"]]
    else:
        targets = [str(repository)]
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(_update_one, backend, target, dry_run) for target in targets]
        for done in as_completed(futures):
            row = done.result()
            rows.append(row)
            typer.echo(f"[{len(rows)}/{len(targets)}] {row['repository']}: {row['status']}", err=True)
    rows.sort(key=lambda row: str(row["repository"]))
    if as_json:
        _print_json(rows)
    else:
        typer.echo(f"{'REPOSITORY':<40} {'STATUS':<11} {'VERSION':<15} {'CONFLICTS':<30} LINK")
        for row in rows:
            versions = f"{row.get('fromVersion', '?')} -> {row.get('toVersion', '?')}"
            conflicts = ", ".join(row.get("conflicts", [])) or "-"
            link = row.get("changeRequestUrl") or row.get("error") or ""
            typer.echo(f"{row['repository']:<40} {row['status']:<11} {versions:<15} {conflicts:<30} {link}")
    if any(row["status"] == "failed" for row in rows):
        raise PltfError(
            f"{sum(row['status'] == 'failed' for row in rows)} of {len(rows)} updates failed", 1, "run_failed"
        )


def main() -> None:
    try:
        code = app(prog_name="pltf", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(exc.exit_code)
    except ClickException as exc:
        # One line, as for every other error, with where to look for the right spelling.
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "pltf"
        typer.echo(f"pltf: error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("pltf: interrupted", err=True)
        sys.exit(130)
    except PltfError as exc:
        detail = "; ".join(f"{f.field}: {f.message}" for f in exc.fields)
        typer.echo(f"pltf: error: {exc.message}" + (f" ({detail})" if detail else ""), err=True)
        sys.exit(2 if exc.code == "usage" else 1)
    except KeyboardInterrupt:
        typer.echo("pltf: interrupted", err=True)
        sys.exit(130)
    except ValidationError as exc:
        if not exc.title.endswith("Settings"):
            raise  # a bug, not a setting: keep the traceback
        # A setting out of range: its variable and why, in one line; never the value (it may be a secret).
        reasons = "; ".join(f"PLTF_{str(error['loc'][-1]).upper()}: {error['msg']}" for error in exc.errors())
        typer.echo(f"pltf: error: invalid setting {reasons}", err=True)
        sys.exit(2)
    except OperationalError as exc:
        # The driver's first line says why (refused, unknown database); SQLAlchemy's text adds a traceback's
        # worth of context and a link. The driver never repeats a password.
        reason = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else type(exc).__name__
        typer.echo(f"pltf: error: cannot use the database: {reason}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
