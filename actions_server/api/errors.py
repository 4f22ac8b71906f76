"""Every error answer in the documented shape: `{"error": {"code", "message", "status", "fields"}}`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import PltfError, invalid_input, pydantic_field_errors
from ..logs import get_logger


def error_response(error: PltfError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error.to_json()}, status_code=error.status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PltfError)
    async def on_pltf_error(_: Request, exc: PltfError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 408:  # the rest of the request may never come; do not wait to read it
            headers = {"Connection": "close"}
        return error_response(exc, headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(invalid_input("invalid request", pydantic_field_errors(list(exc.errors()))))

    @app.exception_handler(Exception)
    async def on_unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        get_logger().error("unhandled error", error_type=type(exc).__name__, exc_info=exc)
        return error_response(PltfError("internal error; the server log has the details", 500, "internal"))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(PltfError(str(exc.detail), exc.status_code, code))
