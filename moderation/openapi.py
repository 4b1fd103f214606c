"""The OpenAPI 3.1 document for /api/v1 and the Perspective and Akismet drop-ins, kept beside
the code it describes. Limits that are settings (MAX_PAGE_SIZE, MAX_COUNT_URIS, ...) are filled
in from the serving app's config each time the document is built."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from flask import current_app, has_app_context

from . import config as defaults


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


def _thread_per_page(page_size: int, max_page_size: int) -> dict[str, Any]:
    """Return the per_page parameter of a thread listing under the server's page settings."""
    return {"name": "per_page", "in": "query", "allowEmptyValue": True,
            "description": f"Empty or absent: {page_size} (the server's PAGE_SIZE); at most "
            f"{max_page_size} (its MAX_PAGE_SIZE).",
            "schema": {"type": "integer", "minimum": 1, "maximum": max_page_size,
                       "default": page_size}}


def _count_request(max_uris: int) -> dict[str, Any]:
    """Return the body schema of a count request under the server's MAX_COUNT_URIS."""
    return {
        "type": "object",
        "required": ["site", "uris"],
        "properties": {
            "site": {"type": "string", "minLength": 1, "description": "The public site key."},
            "uris": {"type": "array", "maxItems": max_uris,
                     "description": f"Page paths, at most {max_uris} (the server's "
                     "MAX_COUNT_URIS); none blank.",
                     "items": {"type": "string", "minLength": 1}},
        },
    }


# The server reads JSON null in most optional fields (a comment's name, e-mail, website, title,
# hp and elapsed_ms; /analyze's lang) as the field left out, so the document admits it there
# too. In an edit a field left out keeps its value, and null clears it as "" does.
_NULL_IS_ABSENT = "`null` is the same as leaving the field out."
_NULL_CLEARS = "`null` removes it, as an empty string does (left out, it stays as it is)."


def _or_null(schema: dict[str, Any], meaning: str = _NULL_IS_ABSENT) -> dict[str, Any]:
    """Return a copy of a schema that also admits JSON null (OpenAPI 3.1: a "null" type),
    its description saying what null means."""
    out = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        out["enum"] = [*schema["enum"], None]
    out["description"] = f"{schema['description']} {meaning}" if "description" in schema \
        else meaning
    return out


def _elapsed_ms(min_fill_ms: int) -> dict[str, Any]:
    """Return the widget's elapsed_ms field under the server's MIN_FILL_MS."""
    return _or_null({"type": "number", "minimum": 0, "description": "Milliseconds the reader "
                     f"spent on the form. Below {min_fill_ms} (the server's MIN_FILL_MS) the "
                     "comment is stored as spam (answer 422)."})


EDIT_TOKEN = {
    "name": "X-Edit-Token",
    "in": "header",
    "required": False,
    "description": "The edit token returned when the comment was posted.",
    "schema": {"type": "string"},
}
COMMENT_ID = {"name": "comment_id", "in": "path", "required": True,
              "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}

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
        "required": ["uri", "title", "total", "roots", "page", "per_page", "pages", "next",
                     "comments"],
        "properties": {
            "uri": {"type": "string"},
            "title": {"type": "string"},
            "total": {"type": "integer", "description": "Published comments in the thread."},
            "roots": {"type": "integer", "description": "Top-level entries across all pages."},
            "page": {"type": ["integer", "null"],
                     "description": "The page number asked for; null when a `cursor` was."},
            "per_page": {"type": "integer"},
            "pages": {"type": "integer", "description": "`roots` in pages of `per_page`."},
            "next": {"type": ["string", "null"],
                     "description": "Opaque cursor of the page after this one: send it back as "
                     "`cursor` (same `site`, `uri` and `sort`). Null when no top-level entry "
                     "follows."},
            "comments": {"type": "array", "items": _ref("ThreadNode")},
        },
    },
    "NewComment": {
        "type": "object",
        "required": ["site", "uri", "text"],
        "additionalProperties": False,
        "properties": {
            "site": {"type": "string", "minLength": 1, "description": "The public site key."},
            "uri": {"type": "string", "minLength": 1,
                    "description": "Page path, e.g. /posts/hello; not blank."},
            "title": _or_null({"type": "string", "maxLength": 300}),
            "parent": {"type": ["integer", "null"], "description": "Comment replied to."},
            "author": _or_null({"type": "string", "maxLength": 64}),
            "email": _or_null({"type": "string", "maxLength": 254,
                               "description": "Never published."}),
            "website": _or_null({"type": "string", "maxLength": 254}),
            "text": {"type": "string", "minLength": 2, "maxLength": 10000,
                     "description": "Markdown subset."},
            "hp": _or_null({"type": "string", "description": "Honeypot: the widget's hidden "
                            "field, sent as is. Anything but empty stores the comment as spam "
                            "(answer 422)."}),
            "elapsed_ms": _elapsed_ms(defaults.MIN_FILL_MS),
        },
    },
    "CommentEdit": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "text": {"type": "string", "minLength": 2, "maxLength": 10000},
            "author": _or_null({"type": "string", "maxLength": 64}, _NULL_CLEARS),
            "website": _or_null({"type": "string", "maxLength": 254}, _NULL_CLEARS),
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
                {"name": "site", "in": "query", "required": True,
                 "description": "The public site key.",
                 "schema": {"type": "string", "minLength": 1}},
                {"name": "uri", "in": "query", "required": True,
                 "description": "Page path, e.g. /posts/hello; not blank.",
                 "schema": {"type": "string", "minLength": 1}},
                {"name": "sort", "in": "query",
                 "description": "Absent: the cursor's order, else oldest.",
                 "schema": {"type": "string", "enum": ["oldest", "newest"]}},
                {"name": "page", "in": "query", "allowEmptyValue": True,
                 "description": "Empty or absent: 1. Counts top-level entries from the "
                 "start, so comments published or removed since the last page can shift "
                 "what it holds; to page on, prefer `cursor`.",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000}},
                {"name": "cursor", "in": "query", "allowEmptyValue": True,
                 "description": "The `next` value of the page before: answers the top-level "
                 "entries after that page's last, in its order, so none repeats or is "
                 "skipped when comments are published or removed meanwhile. A cursor "
                 "belongs to the thread that gave it: send it with the same `site` and "
                 "`uri` (another thread's is a 400, \"belongs to another thread\"). Not "
                 "with `page`; `sort`, if given, must be the cursor's. Empty or absent: the "
                 "first page. Anything else is a 400 naming `cursor`.",
                 "schema": {"type": "string", "maxLength": 200}},
                _thread_per_page(defaults.PAGE_SIZE, defaults.MAX_PAGE_SIZE),
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
                        "note": {"type": "string", "description": "At most 500 characters, "
                                 "counted after normalisation (control and invisible "
                                 "characters removed, runs of spaces collapsed)."},
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
                "content": {"application/json": {
                    "schema": _count_request(defaults.MAX_COUNT_URIS)}},
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


# -- the server-to-server API, authenticated by a site API key -------------------------------

BEARER = [{"bearerAuth": []}]
_KEY_ERRORS = {
    400: "Invalid input; `error.field` names the field.",
    401: "Missing or invalid API key (`unauthorized`).",
    403: "The key lacks the scope this route needs (`insufficient_scope`).",
    404: "No such comment or webhook on the key's site.",
    413: "Body too large.",
    415: "Body is not application/json.",
    429: "Too many requests for this key; see Retry-After.",
    503: "The model is not loaded (`model_unavailable`) or the database is unavailable.",
}


def _key_errors(*codes: int) -> dict[str, Any]:
    return {str(code): _error(_KEY_ERRORS[code]) for code in (401, 403, 429, 503, *codes)}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _page_params(default: int = 50) -> list[dict[str, Any]]:
    # As every whole-number query argument here, an empty value (`?per_page=`) means the default.
    return [
        {"name": "page", "in": "query", "allowEmptyValue": True,
         "description": "Empty or absent: 1.",
         "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1}},
        {"name": "per_page", "in": "query", "allowEmptyValue": True,
         "description": f"Empty or absent: {default}.",
         "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": default}},
    ]


_STATUS_ENUM = ["published", "pending", "spam", "rejected", "deleted"]
_ONE_STATUS = "(?:" + "|".join(_STATUS_ENUM) + ")"
_STATUS_LIST = f"^{_ONE_STATUS}?(?:,{_ONE_STATUS}?)*$"
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_READER = {
    "type": "object",
    "required": ["addr"],
    "additionalProperties": False,
    "description": "The reader the site server posts for: their IP (stored as /24 or /48) "
    "and user agent. Each comment stored for a reader (POST /manage/comments, /analyze with "
    "`store: true`) counts against the per-reader posting limit of that /24 or /48: the "
    "site's own `post` limit if it sets one, else LIMIT_POST; 429 beyond it.",
    "properties": {"addr": {"type": "string", "description": "An IPv4 or IPv6 address.",
                            "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
                   "user_agent": {"type": "string", "description": "Kept to 300 "
                                  "characters."}},
}
# Lengths are checked after normalisation (control and invisible characters removed, spaces
# collapsed), so they are stated in words: a raw string may be longer and still pass.
_COMMENT_FIELDS = {
    "uri": {"type": "string", "minLength": 1,
            "description": "Page path, e.g. /posts/hello; not blank."},
    "title": _or_null({"type": "string", "description": "Kept to 300 characters."}),
    "parent": {"type": ["integer", "null"], "description": "Comment replied to."},
    "author": _or_null({"type": "string", "description": "At most 64 characters."}),
    "email": _or_null({"type": "string", "description": "At most 254 characters."}),
    "website": _or_null({"type": "string",
                         "description": "An http(s) URL, at most 254 characters."}),
    "text": {"type": "string", "description": "Markdown subset, 2 to 10000 characters."},
}
_BAN = {
    "type": "object",
    "additionalProperties": False,
    "description": "Also ban the author: by e-mail (default when the comment has one), "
    "anonymised address (default otherwise) or website domain; for `days`, else for good.",
    "properties": {"by": {"enum": ["email", "addr", "domain", None]},
                   "days": {"type": ["integer", "null"], "minimum": 1, "maximum": 3650}},
}
_ACTION = {"type": "string", "enum": ["approve", "reject", "spam", "delete", "ban"],
           "description": "`ban` bans the author (see `ban`) without changing the status."}

SCHEMAS.update({
    "ManagedComment": {
        "type": "object",
        "required": ["id", "uri", "parent", "status", "author", "email", "website", "text",
                     "html", "client_addr", "user_agent", "spam_score", "toxicity_score",
                     "scores", "reasons", "model_version", "created", "edited", "decided"],
        "properties": {
            "id": {"type": "integer"},
            "uri": {"type": "string"},
            "parent": {"type": ["integer", "null"]},
            "status": {"type": "string", "enum": _STATUS_ENUM},
            "author": {"type": "string"},
            "email": {"type": "string"},
            "website": {"type": "string"},
            "text": {"type": "string"},
            "html": {"type": "string"},
            "client_addr": {"type": "string", "description": "Anonymised: /24 or /48."},
            "user_agent": {"type": "string"},
            "spam_score": {"type": ["number", "null"]},
            "toxicity_score": {"type": ["number", "null"]},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "model_version": {"type": ["string", "null"]},
            "created": {"type": "string", "format": "date-time"},
            "edited": _NULLABLE_TIME,
            "decided": _NULLABLE_TIME,
        },
    },
    "Decision": {
        "type": "object",
        "required": ["action", "status", "reasons"],
        "properties": {
            "action": {"type": "string", "enum": ["publish", "hold", "reject"]},
            "status": {"type": "string", "enum": _STATUS_ENUM},
            "reasons": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ManagedNewComment": {
        "type": "object",
        "required": ["uri", "text", "reader"],
        "additionalProperties": False,
        "properties": {**_COMMENT_FIELDS, "reader": _READER,
                       "hp": _or_null({"type": "string"}),
                       "elapsed_ms": _or_null({"type": "number", "minimum": 0})},
    },
    "ManagedSubmitted": {
        "type": "object",
        "required": ["comment", "decision", "edit_token"],
        "properties": {"comment": _ref("ManagedComment"), "decision": _ref("Decision"),
                       "edit_token": {"type": "string",
                                      "description": "Lets the reader edit via X-Edit-Token."}},
    },
    "ManagedRejected": {
        "type": "object",
        "required": ["error", "comment", "decision"],
        "properties": {"error": SCHEMAS["Error"]["properties"]["error"],
                       "comment": _ref("ManagedComment"), "decision": _ref("Decision")},
    },
    "ManagedPage": {
        "type": "object",
        "required": ["comments", "total", "page", "per_page", "pages"],
        "properties": {"comments": {"type": "array", "items": _ref("ManagedComment")},
                       "total": {"type": "integer"}, "page": {"type": "integer"},
                       "per_page": {"type": "integer"}, "pages": {"type": "integer"}},
    },
    "Moderated": {
        "type": "object",
        "required": ["comments", "bans"],
        "properties": {
            "comments": {"type": "array", "items": _ref("ManagedComment")},
            "bans": {"type": "array", "items": {
                "type": "object", "required": ["id", "kind", "value", "expires"],
                "properties": {"id": {"type": "integer"}, "kind": {"type": "string"},
                               "value": {"type": "string"}, "expires": _NULLABLE_TIME}}},
        },
    },
    "AnalyzeRequest": {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": {
            **_COMMENT_FIELDS,
            # /analyze checks the title itself (server_api.analyze), refusing null.
            "title": {"type": "string", "description": "Kept to 300 characters. Unlike the "
                      "other optional fields here, not `null`."},
            "lang": _or_null({"type": "string", "enum": ["en", "zh"],
                              "description": "Language of the text; detected when absent."}),
            "store": {"type": "boolean", "default": False,
                      "description": "Also store it as a comment on `uri` (needs write); "
                      "with a `reader`, it counts against that reader's posting limit."},
            "reader": _READER,
        },
    },
    "Analysis": {
        "type": "object",
        "required": ["scores", "decision", "spans", "text", "lang", "model_version", "stored"],
        "properties": {
            "scores": {"type": "object", "additionalProperties": {"type": "number"},
                       "description": "spam, toxicity and the model's attributes (0–1)."},
            "decision": _ref("Decision"),
            "spans": {"type": "object", "description": "Per score, the terms that pushed it "
                      "up: {term, field, weight, spans: [[start, end]]}; spans index `text`.",
                      "additionalProperties": {"type": "array", "items": {"type": "object"}}},
            "text": {"type": "string", "description": "The plain text the model scored."},
            "lang": {"type": "string"},
            "model_version": {"type": "string"},
            "stored": {"anyOf": [_ref("ManagedComment"), {"type": "null"}]},
        },
    },
    "FeedbackRequest": {
        "type": "object",
        "required": ["label"],
        "additionalProperties": False,
        "description": "Exactly one of `comment` (an id on the key's site) and `text`.",
        "oneOf": [{"required": ["comment"]}, {"required": ["text"]}],
        "properties": {
            "label": {"type": "string", "enum": ["spam", "ham", "toxic", "ok"]},
            "comment": {"type": "integer"},
            "text": _COMMENT_FIELDS["text"],
            "author": _COMMENT_FIELDS["author"],
            "website": _COMMENT_FIELDS["website"],
            "email": _COMMENT_FIELDS["email"],
        },
    },
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "events", "active", "created"],
        "properties": {
            "id": {"type": "integer"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "active": {"type": "boolean"},
            "created": {"type": "string", "format": "date-time"},
            "secret": {"type": "string", "description": "Signing secret, shown on creation only."},
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "event", "state", "attempts", "last_status", "last_error",
                     "next_attempt", "created", "delivered"],
        "properties": {
            "id": {"type": "integer"},
            "event": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
            "attempts": {"type": "integer"},
            "last_status": {"type": ["integer", "null"]},
            "last_error": {"type": "string"},
            "next_attempt": {"type": "string", "format": "date-time"},
            "created": {"type": "string", "format": "date-time"},
            "delivered": _NULLABLE_TIME,
        },
    },
})

# Routes that store a comment for a reader answer 429 for the reader's limit too (see _READER).
_READER_LIMITED = {"429": _error("Too many requests for this key, or too many comments for "
                                 "this reader; see Retry-After.")}
_WEBHOOK_ID = {"name": "webhook_id", "in": "path", "required": True,
               "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}}
_MODERATION_FIELDS = {"action": _ACTION, "reason": {"type": "string", "maxLength": 1000},
                      "ban": _BAN}

PATHS.update({
    "/api/v1/manage/key": {
        "get": {
            "summary": "Describe the calling key (any scope).",
            "operationId": "keyInfo",
            "security": BEARER,
            "responses": {
                "200": _json({"type": "object", "required": ["key"], "properties": {"key": {
                    "type": "object",
                    "required": ["prefix", "scopes", "site", "site_name", "created"],
                    "properties": {"prefix": {"type": "string"},
                                   "scopes": {"type": "array", "items": {"type": "string"}},
                                   "site": {"type": "string"}, "site_name": {"type": "string"},
                                   "created": {"type": "string", "format": "date-time"}}}}},
                    "The key's site, prefix and scopes."),
                **_key_errors(),
            },
        }
    },
    "/api/v1/manage/comments": {
        "get": {
            "summary": "List the site's comments of any status (scope read).",
            "operationId": "manageListComments",
            "security": BEARER,
            "parameters": [
                {"name": "status", "in": "query",
                 "description": "Comma-separated statuses, e.g. `pending,spam` (empty items "
                 "are skipped); empty or absent: all but deleted.",
                 "schema": {"type": "string", "pattern": _STATUS_LIST}},
                {"name": "uri", "in": "query", "schema": {"type": "string"}},
                {"name": "order", "in": "query",
                 "schema": {"type": "string", "enum": ["newest", "oldest"]}},
                *_page_params(),
            ],
            "responses": {"200": _json(_ref("ManagedPage"), "One page of comments."),
                          **_key_errors(400)},
        },
        "post": {
            "summary": "Post a comment on behalf of a reader (scope write).",
            "operationId": "manageCreateComment",
            "security": BEARER,
            "requestBody": _body(_ref("ManagedNewComment")),
            "responses": {
                "201": _json(_ref("ManagedSubmitted"), "Published."),
                "202": _json(_ref("ManagedSubmitted"), "Held for review."),
                "422": _json(_ref("ManagedRejected"), "Rejected; stored in the Spam/Rejected "
                             "queue."),
                **_key_errors(400, 413, 415),
                **_READER_LIMITED,
            },
        },
    },
    "/api/v1/manage/comments/{comment_id}": {
        "parameters": [COMMENT_ID],
        "get": {
            "summary": "Read one of the site's comments in any status (scope read).",
            "operationId": "manageGetComment",
            "security": BEARER,
            "responses": {
                "200": _json({"type": "object", "required": ["comment"],
                              "properties": {"comment": _ref("ManagedComment")}}, "The comment."),
                **_key_errors(404),
            },
        },
    },
    "/api/v1/manage/comments/{comment_id}/moderation": {
        "parameters": [COMMENT_ID],
        "post": {
            "summary": "Approve, reject, mark spam, delete or ban (scope moderate).",
            "operationId": "manageModerateComment",
            "security": BEARER,
            "requestBody": _body({"type": "object", "required": ["action"],
                                  "additionalProperties": False,
                                  "properties": _MODERATION_FIELDS}),
            "responses": {"200": _json(_ref("Moderated"), "Done; written to the audit trail."),
                          **_key_errors(400, 404, 413, 415)},
        },
    },
    "/api/v1/manage/moderation": {
        "post": {
            "summary": "Apply one moderation action to many comments (scope moderate).",
            "operationId": "manageModerateMany",
            "security": BEARER,
            "requestBody": _body({
                "type": "object", "required": ["ids", "action"], "additionalProperties": False,
                "properties": {"ids": {"type": "array", "minItems": 1, "maxItems": 200,
                                       "items": {"type": "integer"}},
                               **_MODERATION_FIELDS}}),
            "responses": {"200": _json(_ref("Moderated"), "Done; written to the audit trail."),
                          **_key_errors(400, 404, 413, 415)},
        },
    },
    "/api/v1/analyze": {
        "post": {
            "summary": "Score a text and say what the site's policy would do (scope analyze).",
            "operationId": "analyze",
            "security": BEARER,
            "requestBody": _body(_ref("AnalyzeRequest")),
            "responses": {
                "200": _json(_ref("Analysis"), "Scores, decision, reasons and spans."),
                "201": _json(_ref("Analysis"), "Also stored as a comment (`store: true`)."),
                **_key_errors(400, 404, 413, 415),
                **_READER_LIMITED,
            },
        },
    },
    "/api/v1/feedback": {
        "post": {
            "summary": "Label a comment or a text for retraining (scope analyze).",
            "operationId": "feedback",
            "security": BEARER,
            "requestBody": _body(_ref("FeedbackRequest")),
            "responses": {
                "201": _json({"type": "object", "required": ["label"], "properties": {
                    "label": {"type": "object",
                              "required": ["id", "label", "comment", "source", "created"],
                              "properties": {"id": {"type": "integer"},
                                             "label": {"type": "string"},
                                             "comment": {"type": ["integer", "null"]},
                                             "source": {"type": "string"},
                                             "created": {"type": "string",
                                                         "format": "date-time"}}}}},
                    "Kept with the moderators' labels."),
                **_key_errors(400, 404, 413, 415),
            },
        },
    },
    "/api/v1/manage/webhooks": {
        "get": {
            "summary": "List the site's webhooks (scope moderate).",
            "operationId": "listWebhooks",
            "security": BEARER,
            "responses": {
                "200": _json({"type": "object", "required": ["webhooks"], "properties": {
                    "webhooks": {"type": "array", "items": _ref("Webhook")}}}, "Webhooks."),
                **_key_errors(),
            },
        },
        "post": {
            "summary": "Add a webhook; the answer holds its signing secret (scope moderate).",
            "operationId": "createWebhook",
            "security": BEARER,
            "requestBody": _body({
                "type": "object", "required": ["url"], "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "format": "uri", "maxLength": 1000},
                    "events": {"type": "array", "minItems": 1, "items": {
                        "type": "string",
                        "enum": ["comment.created", "comment.held", "comment.moderated"]}},
                }}),
            "responses": {
                "201": _json({"type": "object", "required": ["webhook"],
                              "properties": {"webhook": _ref("Webhook")}}, "Created."),
                **_key_errors(400, 413, 415),
            },
        },
    },
    "/api/v1/manage/webhooks/{webhook_id}": {
        "parameters": [_WEBHOOK_ID],
        "delete": {
            "summary": "Delete a webhook and its delivery log (scope moderate).",
            "operationId": "deleteWebhook",
            "security": BEARER,
            "responses": {"204": {"description": "Deleted."}, **_key_errors(404)},
        },
    },
    "/api/v1/manage/webhooks/{webhook_id}/deliveries": {
        "parameters": [_WEBHOOK_ID],
        "get": {
            "summary": "A webhook's delivery log, newest first (scope moderate).",
            "operationId": "listDeliveries",
            "security": BEARER,
            "parameters": [
                {"name": "state", "in": "query",
                 "schema": {"type": "string", "enum": ["pending", "delivered", "failed"]}},
                *_page_params(),
            ],
            "responses": {
                "200": _json({"type": "object", "required": ["deliveries", "page", "per_page"],
                              "properties": {"deliveries": {"type": "array",
                                                            "items": _ref("Delivery")},
                                             "page": {"type": "integer"},
                                             "per_page": {"type": "integer"}}},
                             "Deliveries with attempts and last outcome."),
                **_key_errors(400, 404),
            },
        },
    },
})
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "mk_<prefix>_<secret>",
                   "description": "A site API key from `flask site add` or `site rotate-key`."},
    "perspectiveKey": {"type": "apiKey", "in": "query", "name": "key",
                       "description": "A site API key with the analyze scope, sent as "
                       "Perspective clients send theirs (`?key=mk_...`)."},
}


# -- the Perspective and Akismet drop-ins --------------------------------------------------------

_PLAIN_TEXT = "text/plain"


def _text(schema: dict[str, Any], description: str,
          headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description,
                              "content": {_PLAIN_TEXT: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _perspective() -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the Perspective drop-in's schemas and path, from compat's own constants."""
    from . import compat  # here: compat imports the API, which imports this module

    attributes = list(compat.ATTRIBUTE_HEADS)
    statuses = sorted({*compat.GOOGLE_STATUS.values(), "UNKNOWN"})  # UNKNOWN: codes not mapped
    score = {"type": "object", "required": ["value", "type"],
             "properties": {"value": {"type": "number", "minimum": 0, "maximum": 1},
                            "type": {"const": "PROBABILITY"}}}
    schemas = {
        "GoogleError": {
            "type": "object",
            "required": ["error"],
            "description": "Google's API error shape.",
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message", "status"],
                "properties": {"code": {"type": "integer", "description": "The HTTP status."},
                               "message": {"type": "string"},
                               "status": {"type": "string", "enum": statuses}},
            }},
        },
        "PerspectiveRequest": {
            "type": "object",
            "required": ["comment", "requestedAttributes"],
            "description": "Perspective's AnalyzeComment request. Nothing is ever stored.",
            "properties": {
                "comment": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "text": {"type": "string", "minLength": 1, "maxLength": compat.MAX_TEXT,
                                 "description": f"Not blank; at most {compat.MAX_TEXT} bytes "
                                 "of UTF-8."},
                        "type": {"type": "string", "enum": ["PLAIN_TEXT", "HTML"],
                                 "default": "PLAIN_TEXT",
                                 "description": "HTML is reduced to its text first."},
                    },
                },
                "requestedAttributes": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"enum": attributes},
                    "description": "The attributes to score, each with its options (`{}` for "
                    "none). Each maps to a head of the model (TOXICITY ← toxicity, INSULT ← "
                    "insult, PROFANITY ← obscene, THREAT ← threat, IDENTITY_ATTACK ← "
                    "identity_attack, SPAM ← spam, SEVERE_TOXICITY ← severe_toxicity); one the "
                    "loaded model lacks is a 400. TOXICITY and SPAM answer `en` and `zh`, the "
                    "others `en` only (another language is a 400).",
                    "additionalProperties": {
                        "type": ["object", "null"],
                        "properties": {
                            "scoreType": {"enum": ["PROBABILITY", "", None],
                                          "description": "PROBABILITY only."},
                            "scoreThreshold": {"description": "A number from 0 to 1: a lower "
                                               "score leaves the attribute out of the answer "
                                               "(anything else is ignored)."},
                        },
                    },
                },
                "languages": {"type": ["array", "null"],
                              "items": {"type": "string", "minLength": 1},
                              "description": "Language codes (`en-US` reads as `en`); "
                              "detected from the text when absent or empty."},
                "spanAnnotations": {"description": "When true, also `spanScores` per "
                                    "sentence."},
                "doNotStore": {"description": "Accepted and ignored: nothing is ever stored."},
                "clientToken": {"description": "A string, echoed in the answer."},
            },
        },
        "PerspectiveResponse": {
            "type": "object",
            "required": ["attributeScores", "languages", "detectedLanguages"],
            "properties": {
                "attributeScores": {
                    "type": "object",
                    "propertyNames": {"enum": attributes},
                    "description": "One entry per requested attribute that reached its "
                    "scoreThreshold.",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["summaryScore"],
                        "properties": {
                            "summaryScore": score,
                            "spanScores": {"type": "array", "items": {
                                "type": "object",
                                "required": ["begin", "end", "score"],
                                "properties": {"begin": {"type": "integer", "minimum": 0},
                                               "end": {"type": "integer", "minimum": 0},
                                               "score": score},
                            }},
                        },
                    },
                },
                "languages": {"type": "array", "items": {"type": "string"}},
                "detectedLanguages": {"type": "array", "items": {"type": "string"}},
                "clientToken": {"type": "string"},
            },
        },
    }

    def error(description: str) -> dict[str, Any]:
        return _json(_ref("GoogleError"), description)

    paths = {"/v1alpha1/comments:analyze": {"post": {
        "summary": "Perspective's AnalyzeComment, answered by the local model (scope analyze).",
        "operationId": "perspectiveAnalyze",
        "security": [{"perspectiveKey": []}, BEARER[0]],
        "requestBody": _body(_ref("PerspectiveRequest")),
        "responses": {
            "200": _json(_ref("PerspectiveResponse"), "Scores per requested attribute."),
            "400": error("Invalid request, or an API key that is not valid "
                         "(INVALID_ARGUMENT)."),
            "403": error("No API key, or one without the analyze scope (PERMISSION_DENIED)."),
            "413": error("Body too large."),
            "429": error("Too many requests for this key (RESOURCE_EXHAUSTED); see "
                         "Retry-After."),
            "503": error("The model is not loaded, or the database is unavailable "
                         "(UNAVAILABLE)."),
        },
    }}}
    return schemas, paths


# Akismet's form fields, as its clients send them; a key is checked, the rest is not.
_AKISMET_KEY = {"type": "string", "description": "A site API key with the analyze scope "
                "(`Authorization: Bearer` works too). A missing or wrong key is answered "
                "`invalid` with X-akismet-debug-help."}
_AKISMET_BLOG = {"type": "string", "description": "The site's front page; accepted, not "
                 "checked."}
_AKISMET_COMMENT = {
    "api_key": _AKISMET_KEY,
    "blog": _AKISMET_BLOG,
    "user_ip": {"type": "string", "description": "Accepted; not used in scoring."},
    "user_agent": {"type": "string", "description": "Accepted; not used in scoring."},
    "referrer": {"type": "string", "description": "Accepted; not used."},
    "permalink": {"type": "string", "description": "Accepted; not used."},
    "comment_type": {"type": "string", "description": "Accepted; not used."},
    "comment_author": {"type": "string", "description": "Scored; kept to 64 characters."},
    "comment_author_email": {"type": "string", "description": "Scored."},
    "comment_author_url": {"type": "string", "description": "Scored when an http(s) URL."},
    "comment_content": {"type": "string", "description": "The comment's text."},
}
_AKISMET_HELP = {"X-akismet-debug-help": {"description": "Why a key or a request was refused.",
                                          "schema": {"type": "string"}}}


def _akismet_form(properties: dict[str, Any], description: str) -> dict[str, Any]:
    # Not required: with the key in an Authorization header, an empty form is answered too.
    return {"required": False, "description": description, "content": {
        "application/x-www-form-urlencoded": {"schema": {"type": "object",
                                                         "properties": properties}}}}


def _akismet_errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "A field is missing or invalid (named in X-akismet-debug-help).",
        413: "Body too large (`413`).",
        429: "Too many requests for this key (`429`); see Retry-After.",
        503: "The model is not loaded (`error`) or the database is unavailable (`503`).",
    }
    return {str(code): _text({"type": "string"}, text[code], _AKISMET_HELP)
            for code in (*codes, 413, 429, 503)}


def _akismet() -> dict[str, Any]:
    """Return the Akismet drop-in's paths (form posts answered in plain text)."""
    from . import compat  # here: compat imports the API, which imports this module

    submitted = _text({"type": "string", "enum": [compat.SUBMITTED, "invalid"]},
                      f"`{compat.SUBMITTED}` (a test submission, `is_test=1`, is acknowledged "
                      "and not stored), or `invalid` for a bad key.", _AKISMET_HELP)
    submit_fields = {**_AKISMET_COMMENT,
                     "comment_content": {"type": "string", "description": "The comment's "
                                         "text: at least 2 characters (else 400)."},
                     "is_test": {"type": "string", "description": "`1` or `true`: acknowledged,"
                                 " not stored."}}

    def submit(label: str, operation: str) -> dict[str, Any]:
        return {"post": {
            "summary": f"Keep a comment as a {label} label for retraining (Akismet, scope "
                       "analyze).",
            "operationId": operation,
            "requestBody": _akismet_form(submit_fields, "Akismet's submit fields."),
            "responses": {"200": submitted, **_akismet_errors(400)},
        }}

    return {
        "/1.1/verify-key": {"post": {
            "summary": "Check a key (Akismet): `valid` for a site API key with the analyze "
                       "scope.",
            "operationId": "akismetVerifyKey",
            "requestBody": _akismet_form(
                {"key": {**_AKISMET_KEY, "description": "The key to check (Akismet's name; "
                         "`api_key` and `Authorization: Bearer` work too)."},
                 "api_key": _AKISMET_KEY, "blog": _AKISMET_BLOG},
                "Akismet's verify-key fields."),
            "responses": {"200": _text({"type": "string", "enum": ["valid", "invalid"]},
                                       "`valid` or `invalid`."),
                          **_akismet_errors()},
        }},
        "/1.1/comment-check": {"post": {
            "summary": "Is this comment spam? (Akismet, scope analyze)",
            "operationId": "akismetCommentCheck",
            "requestBody": _akismet_form(_AKISMET_COMMENT, "Akismet's comment fields."),
            "responses": {
                "200": _text(
                    {"type": "string", "enum": ["true", "false", "invalid"]},
                    "`true` when the spam probability reaches AKISMET_SPAM_PROBABILITY or the "
                    "site's spam hold threshold if higher, else `false`; `invalid` for a bad "
                    "key.",
                    {"X-akismet-pro-tip": {"description": "`discard` from the site's spam "
                                           "reject threshold.",
                                           "schema": {"type": "string", "enum": ["discard"]}},
                     "X-moderation-spam-score": {"description": "The spam probability.",
                                                 "schema": {"type": "string"}},
                     **_AKISMET_HELP}),
                **_akismet_errors(),
            },
        }},
        "/1.1/submit-spam": submit("spam", "akismetSubmitSpam"),
        "/1.1/submit-ham": submit("ham", "akismetSubmitHam"),
    }


def _configure(paths: dict[str, Any], schemas: dict[str, Any], config: Mapping[str, Any]) -> None:
    """Fill in the limits that are settings, as this server has them."""
    listing = paths["/api/v1/comments"]["get"]["parameters"]
    for index, parameter in enumerate(listing):
        if parameter["name"] == "per_page":
            listing[index] = _thread_per_page(int(config["PAGE_SIZE"]),
                                              int(config["MAX_PAGE_SIZE"]))
    body = paths["/api/v1/counts"]["post"]["requestBody"]["content"]["application/json"]
    body["schema"] = _count_request(int(config["MAX_COUNT_URIS"]))
    schemas["NewComment"]["properties"]["elapsed_ms"] = _elapsed_ms(int(config["MIN_FILL_MS"]))


def build_document(server_url: str = "", config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the OpenAPI document, with this server's URL when given.

    Limits that are settings come from config: by default the current app's, or the shipped
    defaults outside an app.
    """
    if config is None:
        config = current_app.config if has_app_context() else vars(defaults)
    perspective_schemas, perspective_paths = _perspective()
    paths = copy.deepcopy({**PATHS, **perspective_paths, **_akismet()})
    schemas = copy.deepcopy({**SCHEMAS, **perspective_schemas})
    _configure(paths, schemas, config)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Moderation comments API",
            "version": "1",
            "description": "Comments for blogs, scored by a local spam and toxicity model; "
            "with drop-in endpoints for Perspective (`/v1alpha1`) and Akismet (`/1.1`) "
            "clients.",
        },
        "servers": [{"url": server_url or "/"}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": copy.deepcopy(SECURITY_SCHEMES)},
    }
