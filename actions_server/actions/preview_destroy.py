"""`preview:destroy`: stops a preview and frees everything it used; its URL stops answering.

    ctx.run_step("teardown", "preview:destroy", {"previewId": "pv-0123456789abcdef"})

Idempotent: destroying a preview that is already gone answers its final status.
The preview's name (`users-api-pr-7`) is accepted in place of its id.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from ..action import Action, RunContext
from ..previews import PreviewManager


class PreviewDestroyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    previewId: str = Field(
        min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Id (or name)."
    )


class PreviewDestroyOutput(BaseModel):
    previewId: str
    status: str
    previewUrl: str | None = None


def create_preview_destroy_action(
    *, previews: Callable[[], PreviewManager]
) -> Action[PreviewDestroyInput, PreviewDestroyOutput]:
    def handler(ctx: RunContext, params: PreviewDestroyInput) -> PreviewDestroyOutput:
        manager = previews()
        if ctx.dry_run:
            preview = manager.get(params.previewId, ctx.caller)
            ctx.logger.info(f"would destroy preview {preview['name']} ({preview['status']})")
            return PreviewDestroyOutput(
                previewId=preview["id"], status=preview["status"], previewUrl=preview["previewUrl"]
            )
        preview = manager.destroy(params.previewId, ctx.logger.info, viewer=ctx.caller)
        return PreviewDestroyOutput(previewId=preview["id"], status=preview["status"], previewUrl=preview["previewUrl"])

    return Action(
        id="preview:destroy",
        description="Destroys a preview environment: stops it, frees its resources, and its URL stops answering.",
        handler=handler,
        examples=[],
    )
