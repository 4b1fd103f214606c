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
                {"name": "page", "in": "query", "allowEmptyValue": True,
                 "description": "Empty or absent: 1.",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000}},
                {"name": "per_page", "in": "query", "allowEmptyValue": True,
                 "description": "Empty or absent: the server's PAGE_SIZE (50 by default); at "
                 "most its MAX_PAGE_SIZE (200 by default).",
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
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_READER = {
    "type": "object",
    "required": ["addr"],
    "additionalProperties": False,
    "description": "The reader the site server posts for: their IP (stored as /24 or /48) "
    "and user agent. Each comment stored for a reader (POST /manage/comments, /analyze with "
    "`store: true`) counts against the per-reader posting limit of that /24 or /48: the "
    "site's own `post` limit if it sets one, else LIMIT_POST; 429 beyond it.",
    "properties": {"addr": {"type": "string", "format": "ip"},
                   "user_agent": {"type": "string", "maxLength": 300}},
}
# Lengths are checked after normalisation (control and invisible characters removed, spaces
# collapsed), so they are stated in words: a raw string may be longer and still pass.
_COMMENT_FIELDS = {
    "uri": {"type": "string", "description": "Page path, e.g. /posts/hello."},
    "title": {"type": "string", "description": "Kept to 300 characters."},
    "parent": {"type": ["integer", "null"], "description": "Comment replied to."},
    "author": {"type": "string", "description": "At most 64 characters."},
    "email": {"type": "string", "description": "At most 254 characters."},
    "website": {"type": "string", "description": "An http(s) URL, at most 254 characters."},
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
                       "hp": {"type": "string"}, "elapsed_ms": {"type": "number", "minimum": 0}},
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
            "lang": {"type": "string", "enum": ["en", "zh"],
                     "description": "Language of the text; detected when absent."},
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
        "description": "Either `comment` (an id on the key's site) or `text`.",
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
                {"name": "status", "in": "query", "schema": {"type": "string"},
                 "description": "Comma-separated statuses; default all but deleted."},
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
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }
