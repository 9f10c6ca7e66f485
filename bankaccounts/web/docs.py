"""The API documentation, served from the package and true to the edge's answers.

FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN (blank without
internet) and start them with an inline script (which the Content-Security-Policy
forbids). Here the assets come from the fastapi-offline package and each page starts
from a script file in static/docs/. The OpenAPI document gains the answers that the
guards of security.py give before any route runs (400, 403, 413, 415).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from bankaccounts.web.security import (
    MAX_BODY_BYTES,
    STATE_CHANGING_METHODS,
    content_security_policy,
)

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

DOCS_ASSETS_URL = "/docs-assets"
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "properties": {"detail": {"title": "Detail", "type": "string"}},
    "required": ["detail"],
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
HOST_RESPONSE = ("400", "The Host header names a host that is not allowed")
WRITE_RESPONSES = (
    ("403", "A browser sent it from another site or origin (Origin, Sec-Fetch-Site)"),
    ("413", f"The body is larger than {MAX_BODY_BYTES // 1024} KiB"),
    ("415", "Content-Type is not application/json"),
)
#: The <style> that ReDoc's bundle adds as it loads, before it knows the nonce:
#: created empty, then filled with its scrollbar CSS (the browser test notices a
#: new bundle that needs others).
REDOC_STYLE_HASHES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
)
#: Bodyless writes still say Content-Type: application/json; the body is ignored.
IGNORED_BODY: dict[str, Any] = {
    "required": False,
    "description": "None needed: send {} or nothing, with Content-Type: "
    "application/json (required of every write, against cross-site forms)",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def add_docs(app: FastAPI, templates: Jinja2Templates) -> None:
    """Serves /docs (Swagger UI) and /redoc (ReDoc) with local assets only."""
    app.mount(
        DOCS_ASSETS_URL,
        StaticFiles(packages=[("fastapi_offline", "static")]),
        name="docs-assets",
    )

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def swagger_ui(request: Request) -> Any:
        return templates.TemplateResponse(
            request, "docs.html", {"title": app.title, "openapi_url": app.openapi_url}
        )

    @app.get("/redoc", response_class=HTMLResponse, include_in_schema=False)
    def redoc(request: Request) -> Any:
        # ReDoc styles itself with <style> elements (styled-components): they
        # carry this response's nonce, which ReDoc is given, and nothing else may.
        nonce = secrets.token_urlsafe(18)
        response = templates.TemplateResponse(
            request,
            "redoc.html",
            {"title": app.title, "openapi_url": app.openapi_url, "nonce": nonce},
        )
        response.headers["Content-Security-Policy"] = content_security_policy(
            f"'nonce-{nonce}'", *REDOC_STYLE_HASHES
        )
        return response

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = document_edge_responses(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_edge_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """Adds the guards' answers to every operation; a JSON body to bodyless writes."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            answers = [HOST_RESPONSE]
            if method.upper() in STATE_CHANGING_METHODS:
                answers.extend(WRITE_RESPONSES)
                operation.setdefault("requestBody", IGNORED_BODY)
            responses = operation.setdefault("responses", {})
            for code, description in answers:
                responses.setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
    return schema
