"""The OpenAPI 3.1 document for /api/v1, kept beside the code it describes."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid input; `error.field` names the field.",
        403: "Origin not allowed, bad edit token or edit window closed.",
        404: "Unknown site or comment.",
        413: "Body too large.",
        415: "Body is not application/json.",
        422: "Rejected by the site's policy.",
        429: "Too many requests; see Retry-After.",
        503: "The database is unavailable.",
    }
    return {str(code): _error(text[code]) for code in codes}


EDIT_TOKEN = {
    "name": "X-Edit-Token",
    "in": "header",
    "required": False,
    "description": "The edit token returned when the comment was posted.",
    "schema": {"type": "string"},
}
COMMENT_ID = {"name": "comment_id", "in": "path", "required": True,
              "schema": {"type": "integer", "minimum": 1}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                },
            }
        },
    },
    "Comment": {
        "type": "object",
        "required": ["id", "parent", "author", "website", "html", "created", "edited"],
        "properties": {
            "id": {"type": "integer"},
            "parent": {"type": ["integer", "null"]},
            "author": {"type": "string"},
            "website": {"type": "string"},
            "html": {"type": "string", "description": "Sanitised HTML."},
            "created": {"type": "string", "format": "date-time"},
            "edited": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "OwnComment": {
        "allOf": [
            _ref("Comment"),
            {
                "type": "object",
                "required": ["status", "text", "uri", "editable_until"],
                "properties": {
                    "status": {"type": "string",
                               "enum": ["published", "pending", "spam", "rejected", "deleted"]},
                    "text": {"type": "string", "description": "The markdown as written."},
                    "uri": {"type": "string"},
                    "editable_until": {"type": "string", "format": "date-time"},
                },
            },
        ]
    },
    "ThreadNode": {
        "type": "object",
        "required": ["id", "parent", "replies"],
        "description": "A published comment, or a placeholder (`deleted: true`) for a removed "
        "comment that still has published replies.",
        "properties": {
            "id": {"type": "integer"},
            "parent": {"type": ["integer", "null"]},
            "deleted": {"type": "boolean"},
            "author": {"type": "string"},
            "website": {"type": "string"},
            "html": {"type": "string"},
            "created": {"type": "string", "format": "date-time"},
            "edited": {"type": ["string", "null"], "format": "date-time"},
            "replies": {"type": "array", "items": _ref("ThreadNode")},
        },
    },
    "ThreadPage": {
        "type": "object",
        "required": ["uri", "title", "total", "roots", "page", "per_page", "pages", "comments"],
        "properties": {
            "uri": {"type": "string"},
            "title": {"type": "string"},
            "total": {"type": "integer", "description": "Published comments in the thread."},
            "roots": {"type": "integer", "description": "Top-level entries across all pages."},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "pages": {"type": "integer"},
            "comments": {"type": "array", "items": _ref("ThreadNode")},
        },
    },
    "NewComment": {
        "type": "object",
        "required": ["site", "uri", "text"],
        "additionalProperties": False,
        "properties": {
            "site": {"type": "string", "description": "The public site key."},
            "uri": {"type": "string", "description": "Page path, e.g. /posts/hello."},
            "title": {"type": "string", "maxLength": 300},
            "parent": {"type": ["integer", "null"], "description": "Comment replied to."},
            "author": {"type": "string", "maxLength": 64},
            "email": {"type": "string", "maxLength": 254, "description": "Never published."},
            "website": {"type": "string", "maxLength": 254},
            "text": {"type": "string", "minLength": 2, "maxLength": 10000,
                     "description": "Markdown subset."},
            "hp": {"type": "string", "description": "Honeypot: the widget's hidden field, "
                   "sent as is. Anything but empty stores the comment as spam (answer 422)."},
            "elapsed_ms": {"type": "number", "minimum": 0, "description": "Milliseconds the "
                           "reader spent on the form. Below the server's MIN_FILL_MS (2000 by "
                           "default) the comment is stored as spam (answer 422)."},
        },
    },
    "CommentEdit": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "text": {"type": "string", "minLength": 2, "maxLength": 10000},
            "author": {"type": "string", "maxLength": 64},
            "website": {"type": "string", "maxLength": 254},
        },
    },
    "Submitted": {
        "type": "object",
        "required": ["comment", "edit_token"],
        "properties": {"comment": _ref("OwnComment"), "edit_token": {"type": "string"}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "checks": {"type": "object"},
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/comments": {
        "get": {
            "summary": "List a thread's published comments as a tree.",
            "operationId": "listComments",
            "parameters": [
                {"name": "site", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "uri", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "sort", "in": "query",
                 "schema": {"type": "string", "enum": ["oldest", "newest"]}},
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "per_page", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
            ],
            "responses": {
                "200": _json(_ref("ThreadPage"), "One page of top-level comments."),
                **_errors(400, 403, 404, 429, 503),
            },
        },
        "post": {
            "summary": "Submit a comment.",
            "operationId": "createComment",
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("NewComment")}}},
            "responses": {
                "201": _json(_ref("Submitted"), "Published."),
                "202": _json(_ref("Submitted"), "Held for review; visible to its author only."),
                **_errors(400, 403, 404, 413, 415, 422, 429, 503),
            },
        },
    },
    "/api/v1/comments/{comment_id}": {
        "parameters": [COMMENT_ID],
        "get": {
            "summary": "Read a published comment, or one's own held comment with its token.",
            "operationId": "getComment",
            "parameters": [EDIT_TOKEN],
            "responses": {
                "200": _json(
                    {"type": "object", "required": ["comment"],
                     "properties": {"comment": {"anyOf": [_ref("OwnComment"), _ref("Comment")]}}},
                    "The comment.",
                ),
                **_errors(403, 404, 503),
            },
        },
        "patch": {
            "summary": "Edit one's own comment within the edit window.",
            "operationId": "editComment",
            "parameters": [EDIT_TOKEN],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("CommentEdit")}}},
            "responses": {
                "200": _json({"type": "object", "properties": {"comment": _ref("OwnComment")}},
                             "Edited and published."),
                "202": _json({"type": "object", "properties": {"comment": _ref("OwnComment")}},
                             "Edited and held for review."),
                **_errors(400, 403, 404, 413, 415, 422, 429, 503),
            },
        },
        "delete": {
            "summary": "Delete one's own comment within the edit window.",
            "operationId": "deleteComment",
            "parameters": [EDIT_TOKEN],
            "responses": {"204": {"description": "Deleted."}, **_errors(403, 404, 429, 503)},
        },
    },
    "/api/v1/comments/{comment_id}/report": {
        "parameters": [COMMENT_ID],
        "post": {
            "summary": "Flag a published comment for the moderators.",
            "operationId": "reportComment",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "reason": {"type": "string",
                                   "enum": ["spam", "abuse", "off-topic", "other"]},
                        "note": {"type": "string", "maxLength": 500},
                    },
                }}},
            },
            "responses": {
                "201": _json({"type": "object", "properties": {"reported": {"type": "boolean"}}},
                             "Reported."),
                **_errors(400, 403, 404, 415, 429, 503),
            },
        },
    },
    "/api/v1/counts": {
        "post": {
            "summary": "Published comment counts for many pages.",
            "operationId": "countComments",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["site", "uris"],
                    "properties": {
                        "site": {"type": "string"},
                        "uris": {"type": "array", "maxItems": 100, "items": {"type": "string"}},
                    },
                }}},
            },
            "responses": {
                "200": _json(
                    {"type": "object", "required": ["counts"], "properties": {
                        "counts": {"type": "object",
                                   "additionalProperties": {"type": "integer"}}}},
                    "Counts keyed by the URIs as sent.",
                ),
                **_errors(400, 403, 404, 415, 429, 503),
            },
        },
    },
    "/api/v1/health": {
        "get": {
            "summary": "Service health: database, limiter storage and model.",
            "operationId": "health",
            "responses": {
                "200": _json(_ref("Health"), "ok, or degraded (still serving)."),
                "503": _json(_ref("Health"), "The database is unavailable."),
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document.",
            "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        }
    },
}


def build_document(server_url: str = "") -> dict[str, Any]:
    """Return the OpenAPI document, with this server's URL when given."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Moderation comments API",
            "version": "1",
            "description": "Comments for blogs, scored by a local spam and toxicity model.",
        },
        "servers": [{"url": server_url or "/"}],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
