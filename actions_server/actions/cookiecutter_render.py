"""`cookiecutter:render`: renders a template into a workspace, with the values as data."""

from __future__ import annotations

import base64
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..action import Action, Example, RunContext
from ..config import Settings
from ..templates.catalog import TemplateCatalog
from ..templates.render import build_context, check_paths
from ..templates.render_pool import RenderJob, render_pool
from ..workspaces import WorkspaceStore


class RenderInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        min_length=1,
        max_length=500,
        description="A template name in cookiecutters/, or a git URL from an allow-listed source.",
    )
    ref: str | None = Field(None, max_length=200, description="Branch, tag or commit of a git template.")
    directory: str | None = Field(None, max_length=300, description="Folder of the template inside a git repository.")
    values: dict[str, Any] = Field(default_factory=dict, description="Values for the template's cookiecutter.json.")


class FileContent(BaseModel):
    path: str
    executable: bool
    base64Content: str


class RenderOutput(BaseModel):
    workspaceId: str | None = Field(None, description="Stored workspace; absent on a dry run.")
    directory: str = Field(description="Name of the generated directory.")
    files: list[str] = Field(description="Rendered paths, relative to the generated directory.")
    template: str
    templateVersion: str
    directoryContents: list[FileContent] | None = Field(
        None, description="On a dry run, the files themselves, as in Backstage's dry-run."
    )


def check_render(params: RenderInput, templates: TemplateCatalog) -> None:
    """The template exists and the values fit its schema and paths (also `service:create`'s check)."""
    template = templates.get(params.template, params.ref, params.directory)
    values = template.validate_values(params.values)
    check_paths(template, build_context(template, values), values)


def listed_input_schema(templates: TemplateCatalog) -> dict[str, Any]:
    """The input schema, with each local template's own values schema."""
    schema = RenderInput.model_json_schema()
    found = templates.list()
    schema["properties"]["template"]["examples"] = [t.name for t in found]
    schema["allOf"] = [
        {
            "if": {"properties": {"template": {"const": t.name}}, "required": ["template"]},
            "then": {"properties": {"values": t.values_schema}},
        }
        for t in found
    ]
    return schema


EXAMPLE_VALUES = {
    "name": "users-api",
    "description": "Users API",
    "owner": "group:default/platform-team",
    "system": "pltf",
}


def create_cookiecutter_render_action(
    *, templates: TemplateCatalog, workspaces: WorkspaceStore, settings: Settings
) -> Action[RenderInput, RenderOutput]:
    def handler(ctx: RunContext, params: RenderInput) -> RenderOutput:
        template = templates.get(params.template, params.ref, params.directory)
        values = template.validate_values(params.values)
        ctx.logger.info(f"rendering template {template.name} {template.version}", source=template.source)
        # In this thread, or in a worker process when other renders are running (templates/render_pool.py).
        job = RenderJob(values, ctx.workspace / "out", params.directory, archive=not ctx.dry_run)
        workspace = render_pool(settings).render(settings, template, job, ctx.logger.info)
        rendered = workspace.rendered
        where = " by a worker process" if workspace.where == "worker" else ""
        ctx.logger.info(f"rendered {len(rendered.files)} files into {rendered.directory}/{where}")
        output = RenderOutput(
            directory=rendered.directory, files=rendered.files, template=template.name, templateVersion=template.version
        )
        if ctx.dry_run:
            output.directoryContents = [
                FileContent(
                    path=path,
                    executable=os.access(rendered.project_dir / path, os.X_OK),
                    base64Content=base64.b64encode((rendered.project_dir / path).read_bytes()).decode(),
                )
                for path in rendered.files
            ]
            return output
        output.workspaceId = workspaces.save(rendered.project_dir, rendered.files, ctx.run_id, workspace.archive)
        ctx.logger.info(f"stored workspace {output.workspaceId}")
        return output

    return Action(
        id="cookiecutter:render",
        description=(
            "Renders a cookiecutter template into a workspace. "
            "Values are data: never evaluated as templates, commands or paths."
        ),
        handler=handler,
        check=lambda params: check_render(params, templates),
        input_schema=lambda: listed_input_schema(templates),
        examples=[
            Example("Render the golden-path Python service", {"template": "python-service", "values": EXAMPLE_VALUES}),
            Example(
                "Preview the files without storing a workspace",
                {"template": "python-service", "values": {**EXAMPLE_VALUES, "name": "orders-api"}},
                dry_run=True,
            ),
        ],
    )
