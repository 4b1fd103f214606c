"""One JSON error shape under the APIs, the protocols' own shapes under the Perspective and
Akismet drop-ins, readable HTML pages everywhere else."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .db import db
from .exceptions import Forbidden, InvalidField, NotFound

# Paths whose clients expect JSON errors.
JSON_PREFIXES = ("/api/",)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "server_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error a view raises to answer with a given status, code, message and field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def wants_json() -> bool:
    """Return whether this request should get a JSON error."""
    return request.path.startswith(JSON_PREFIXES) or (
        request.accept_mimetypes.best == "application/json"
    )


def _protocol_error(status: int, message: str) -> Response | None:
    """Return the error in Perspective's or Akismet's shape under their paths, else None."""
    from . import compat  # here: compat imports the API, which imports this module

    return compat.protocol_error(status, message)


def error_response(
    status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> Response:
    """Return the error as JSON under the API, in the protocol's own shape under the
    Perspective and Akismet paths (an unknown path or method there, a database outage), or as
    an HTML page elsewhere."""
    protocol = _protocol_error(status, message)
    if protocol is not None:
        return protocol
    if wants_json():
        body: dict[str, Any] = {"code": code, "message": message}
        if field:
            body["field"] = field
        body.update(extra)
        response = jsonify(error=body)
    else:
        response = Response(
            render_template("errors/error.html", status=status, code=code, message=message),
            mimetype="text/html",
        )
    response.status_code = status
    return response


def _http(error: HTTPException) -> Response:
    status = error.code or 500
    message = error.description or ""
    if status == 429:
        message = f"Too many requests: limit {message}. Try again later."
    response = error_response(status, CODES.get(status, "error"), message)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _server_error(error: Exception) -> Response:
    db.session.rollback()
    if isinstance(error, (OperationalError, SAInterfaceError)):
        return error_response(503, "service_unavailable", "The database is unavailable; retry.")
    if isinstance(error, HTTPException):
        return _http(error)
    return error_response(500, "server_error", "Something went wrong on our side.")


def init_app(app: Flask) -> None:
    """Register the handlers that turn every failure into the shared error shape."""
    app.register_error_handler(
        ApiError, lambda e: error_response(e.status, e.code, e.message, e.field)
    )
    app.register_error_handler(
        InvalidField, lambda e: error_response(400, e.code, e.message, e.field)
    )
    app.register_error_handler(
        NotFound, lambda e: error_response(404, e.code, e.message, e.field)
    )
    app.register_error_handler(
        Forbidden, lambda e: error_response(403, e.code, e.message, e.field)
    )
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(OperationalError, _server_error)
    app.register_error_handler(SAInterfaceError, _server_error)
    app.register_error_handler(500, _server_error)
