"""Drop-in endpoints speaking Perspective's and Akismet's protocols, backed by the local model."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import classifier as model
from . import comments, keys, sanitising
from .api import pipeline
from .db import ApiKey, Label, db
from .exceptions import InvalidField
from .server_api import detect_language

perspective = Blueprint("perspective", __name__, url_prefix="/v1alpha1")
akismet = Blueprint("akismet", __name__, url_prefix="/1.1")

# Perspective attribute → the model head that answers it. SEVERE_TOXICITY has no head in the
# shipped model (too few training rows), so asking for it is a 400 like any unsupported attribute.
ATTRIBUTE_HEADS = {
    "TOXICITY": "toxicity",
    "SEVERE_TOXICITY": "severe_toxicity",
    "INSULT": "insult",
    "PROFANITY": "obscene",
    "THREAT": "threat",
    "IDENTITY_ATTACK": "identity_attack",
    "SPAM": "spam",
}
# Languages each attribute is trained for; the attribute heads saw English only.
ATTRIBUTE_LANGUAGES: dict[str, tuple[str, ...]] = {name: ("en",) for name in ATTRIBUTE_HEADS}
ATTRIBUTE_LANGUAGES.update(TOXICITY=("en", "zh"), SPAM=("en", "zh"))
GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 405: "INVALID_ARGUMENT", 413: "INVALID_ARGUMENT",
                 415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE"}
MAX_TEXT = 20_480  # Perspective's own limit, in bytes of UTF-8
_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？]*\s*")


# -- Perspective ------------------------------------------------------------------------------


class PerspectiveError(Exception):
    """An error answered in Google's API error shape."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def google_error(code: int, message: str) -> Response:
    """Return {"error": {"code", "message", "status"}} as Google APIs do."""
    response = jsonify(error={"code": code, "message": message,
                              "status": GOOGLE_STATUS.get(code, "UNKNOWN")})
    response.status_code = code
    return response


@perspective.errorhandler(PerspectiveError)
def _perspective_error(error: PerspectiveError) -> Response:
    return google_error(error.code, error.message)


@perspective.errorhandler(HTTPException)
def _perspective_http(error: HTTPException) -> Response:
    code = error.code or 500
    message = error.description or "error"
    if code == 429:
        message = f"Quota exceeded for this API key: {message}."
    return google_error(code, message)


def _perspective_key() -> ApiKey:
    if not request.args.get("key") and "Authorization" not in request.headers:
        raise PerspectiveError(403, "The request is missing a valid API key.")
    found = keys.current()
    if found is None:
        raise PerspectiveError(400, "API key not valid. Please pass a valid API key.")
    if "analyze" not in (found.scopes or []):
        raise PerspectiveError(403, "This API key lacks the analyze scope.")
    return found


def _language(code: object) -> str:
    if not isinstance(code, str) or not code:
        raise PerspectiveError(400, "languages must be a list of language codes.")
    return code.split("-")[0].split("_")[0].lower()


def _spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in _SENTENCE.finditer(text):
        start, end = match.start(), match.end()
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


@perspective.post("/comments:analyze")
@keys.limited
def analyze() -> Response:
    """Answer a Perspective AnalyzeComment request with this server's model."""
    _perspective_key()
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise PerspectiveError(400, "Invalid JSON payload received.")
    comment = data.get("comment")
    if not isinstance(comment, dict):
        comment = {}
    text = comment.get("text")
    if not isinstance(text, str) or not text.strip():
        raise PerspectiveError(400, "Comment must be specified with non-empty comment.text.")
    if len(text.encode()) > MAX_TEXT:
        raise PerspectiveError(400, f"Comment text too long: at most {MAX_TEXT} bytes.")
    if comment.get("type", "PLAIN_TEXT") == "HTML":
        text = sanitising.plain_text(text)
    elif comment.get("type", "PLAIN_TEXT") != "PLAIN_TEXT":
        raise PerspectiveError(400, "comment.type must be PLAIN_TEXT or HTML.")
    text = sanitising.normalise(text)
    requested = data.get("requestedAttributes")
    if not isinstance(requested, dict) or not requested:
        raise PerspectiveError(400, "Must request at least one attribute.")
    languages = data.get("languages")
    if languages is not None and not isinstance(languages, list):
        raise PerspectiveError(400, "languages must be a list of language codes.")
    detected = detect_language(text)
    wanted = [_language(code) for code in languages] if languages else [detected]
    classifier = model.status(current_app).classifier
    if classifier is None:
        raise PerspectiveError(503, "The model is not loaded; retry later.")

    item = model.CommentText(text)
    whole = classifier.score_one(item).as_dict()
    for name, options in requested.items():
        if name not in ATTRIBUTE_HEADS:
            raise PerspectiveError(400, f"Unknown requested attribute: {name}")
        if ATTRIBUTE_HEADS[name] not in whole:
            raise PerspectiveError(
                400, f"Attribute {name} is not supported by this server's model.")
        unsupported = [code for code in wanted if code not in ATTRIBUTE_LANGUAGES[name]]
        if unsupported:
            raise PerspectiveError(
                400, f"Attribute {name} does not support request languages: "
                     + ", ".join(unsupported))
        if options is not None and not isinstance(options, dict):
            raise PerspectiveError(400, f"requestedAttributes.{name} must be an object.")
        score_type = (options or {}).get("scoreType", "PROBABILITY")
        if score_type not in ("PROBABILITY", None, ""):
            raise PerspectiveError(400, f"Unsupported scoreType {score_type}: only PROBABILITY.")

    spans = _spans(text) if data.get("spanAnnotations") else []
    span_scores = classifier.score([model.CommentText(text[s:e]) for s, e in spans])
    out: dict[str, Any] = {}
    for name, options in requested.items():
        head = ATTRIBUTE_HEADS[name]
        value = float(whole[head])
        threshold = (options or {}).get("scoreThreshold")
        if isinstance(threshold, int | float) and value < threshold:
            continue
        entry: dict[str, Any] = {"summaryScore": {"value": value, "type": "PROBABILITY"}}
        if spans:
            entry["spanScores"] = [
                {"begin": s, "end": e,
                 "score": {"value": float(sc.as_dict()[head]), "type": "PROBABILITY"}}
                for (s, e), sc in zip(spans, span_scores, strict=True)
            ]
        out[name] = entry
    body: dict[str, Any] = {"attributeScores": out, "languages": wanted,
                            "detectedLanguages": [detected]}
    if isinstance(data.get("clientToken"), str):
        body["clientToken"] = data["clientToken"]
    return jsonify(body)


# -- errors outside the views -----------------------------------------------------------------


def _under(prefix: str | None) -> bool:
    path = request.path
    return bool(prefix) and (path == prefix or path.startswith(f"{prefix}/"))


def protocol_error(code: int, message: str) -> Response | None:
    """Answer an error the blueprints' own handlers never see (no such path or method under
    theirs, a database outage) in the protocol's shape; None outside their paths."""
    if _under(perspective.url_prefix):
        return google_error(code, message or "error")
    if _under(akismet.url_prefix):
        return akismet_error(code, message)
    return None


# -- Akismet ----------------------------------------------------------------------------------

SUBMITTED = "Thanks for making the web a better place."


def _text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(body, status=status, mimetype="text/plain")
    response.headers.update(headers or {})
    return response


def akismet_error(code: int, message: str) -> Response:
    """Return an Akismet-style error: the status as the plain-text body, the reason in
    X-akismet-debug-help."""
    return _text(str(code), code, {"X-akismet-debug-help": " ".join(message.split()) or "error"})


@akismet.errorhandler(HTTPException)
def _akismet_http(error: HTTPException) -> Response:
    return akismet_error(error.code or 500, error.description or "error")


@akismet.errorhandler(InvalidField)
def _akismet_field(error: InvalidField) -> Response:
    return _text("Missing or invalid field", 400,
                 {"X-akismet-debug-help": f"{error.field}: {error.message}"})


def _akismet_key() -> ApiKey | None:
    found = keys.current()
    return found if found is not None and "analyze" in (found.scopes or []) else None


def _invalid() -> Response:
    return _text("invalid", 200, {"X-akismet-debug-help": "We were unable to verify your API key."})


def _fields() -> dict[str, str]:
    form = request.form
    return {
        "text": form.get("comment_content", ""),
        "author": form.get("comment_author", ""),
        "email": form.get("comment_author_email", ""),
        "website": form.get("comment_author_url", ""),
    }


def _item(fields: dict[str, str]) -> model.CommentText:
    text = sanitising.normalise(fields["text"]).strip()
    website = fields["website"].strip()
    if website and not website.startswith(("http://", "https://")):
        website = ""
    return model.CommentText(text, sanitising.normalise(fields["author"]).strip()[:64],
                             website[:254], fields["email"].strip().lower()[:254])


@akismet.post("/verify-key")
@keys.limited
def verify_key() -> Response:
    """Answer "valid" for a site API key with the analyze scope, else "invalid"."""
    return _text("valid") if _akismet_key() else _text("invalid")


@akismet.post("/comment-check")
@keys.limited
def comment_check() -> Response:
    """Answer "true" (spam) or "false"; blatant spam adds X-akismet-pro-tip: discard."""
    found = _akismet_key()
    if found is None:
        return _invalid()
    classifier = model.status(current_app).classifier
    if classifier is None:
        return _text("error", 503,
                     {"X-akismet-debug-help": "The spam model is not loaded; retry later."})
    item = _item(_fields())
    spam = classifier.score_one(item).spam
    band = comments.site_settings(found.site, pipeline()).thresholds["spam"]
    headers = {"X-moderation-spam-score": f"{spam:.4f}"}
    if spam >= band.reject:
        headers["X-akismet-pro-tip"] = "discard"
    is_spam = spam >= max(band.hold, float(current_app.config["AKISMET_SPAM_PROBABILITY"]))
    return _text("true" if is_spam else "false", 200, headers)


def _submit(label: str) -> Response:
    found = _akismet_key()
    if found is None:
        return _invalid()
    fields = _fields()
    if request.form.get("is_test") in ("1", "true"):
        return _text(SUBMITTED)  # test submissions are acknowledged, never kept for training
    item = _item(fields)
    if len(item.text) < 2:
        raise InvalidField("comment_content", "is required")
    classifier = model.status(current_app).classifier
    scores = classifier.score_one(item).as_dict() if classifier else {}
    db.session.add(Label(site_id=found.site_id, text=item.text, author=item.author,
                         website=item.website, email=item.email, label=label,
                         source=keys.actor(found), scores=scores,
                         model_version=classifier.version if classifier else None))
    db.session.commit()
    return _text(SUBMITTED)


@akismet.post("/submit-spam")
@keys.limited
def submit_spam() -> Response:
    """Keep a missed spam as a spam label for retraining."""
    return _submit("spam")


@akismet.post("/submit-ham")
@keys.limited
def submit_ham() -> Response:
    """Keep a false positive as a ham label for retraining."""
    return _submit("ham")
