"""The machine API: keys write entries and follow the list's changes (CONTRACT, "Machine API").

Views stay thin: they authenticate (blocklist.api_keys), parse (blocklist.api_input) and call
the same services as the admin, so the audit trail (with the key's name as the actor) and the
exports follow every change made here.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from blocklist import changes, services
from blocklist.api_input import BadInput, delist_fields, entry_fields, json_object
from blocklist.api_keys import Scope, error, key_required
from blocklist.formats import entry_api_json
from blocklist.models import Entry

NEW_ENTRY_FIELDS = ("network", *services.EDITABLE_TERMS)
# Ids a database key can hold: anything else in the URL is an unknown entry, not a crash.
ENTRY_ID_RE = re.compile(r"^[1-9][0-9]{0,18}$")
MAX_ID = 2**63 - 1


def _bad_input(e: BadInput) -> JsonResponse:
    return error(e.message, 400, fields=e.fields)


def _entry_or_none(entry_id: str) -> Entry | None:
    if not ENTRY_ID_RE.match(entry_id) or int(entry_id) > MAX_ID:
        return None
    return Entry.objects.filter(pk=int(entry_id)).first()


@require_POST
@key_required(Scope.WRITE)
def entries(request: HttpRequest) -> HttpResponse:
    """POST: list a network; the same live network again answers 200 with its entry."""
    try:
        fields = entry_fields(json_object(request), allowed=NEW_ENTRY_FIELDS, required=("network",))
    except BadInput as e:
        return _bad_input(e)
    network = fields.pop("network")
    entry, outcome = services.entry_list(network, actor=request.caller.name, **fields)
    return JsonResponse(entry_api_json(entry), status=200 if outcome == services.UNCHANGED else 201)


@require_http_methods(["PATCH"])
@key_required(Scope.WRITE)
def entry(request: HttpRequest, entry_id: str) -> HttpResponse:
    """PATCH: change an entry's public terms."""
    try:
        terms = entry_fields(json_object(request), allowed=services.EDITABLE_TERMS)
        if not terms:
            raise BadInput(f"nothing to change: send any of {', '.join(services.EDITABLE_TERMS)}")
    except BadInput as e:
        return _bad_input(e)
    found = _entry_or_none(entry_id)
    if found is None:
        return error("no such entry", 404)
    if found.delisted_at is not None:
        return error("this entry is delisted; list the network again instead", 409)
    services.entry_update(found, actor=request.caller.name, **terms)
    return JsonResponse(entry_api_json(found))


@require_POST
@key_required(Scope.WRITE)
def entry_delist(request: HttpRequest, entry_id: str) -> HttpResponse:
    """POST {"reason": ...}: delist the entry; one delisted already is answered as it is."""
    try:
        reason = delist_fields(json_object(request))["reason"]
    except BadInput as e:
        return _bad_input(e)
    found = _entry_or_none(entry_id)
    if found is None:
        return error("no such entry", 404)
    services.entries_delist([found.pk], actor=request.caller.name, reason=reason)
    found.refresh_from_db()
    return JsonResponse(entry_api_json(found))


@require_safe
@key_required(Scope.READ)
def change_stream(request: HttpRequest) -> HttpResponse:
    """Without a cursor the active set (streamed); with one, what changed since."""
    if "cursor" not in request.GET:
        return StreamingHttpResponse(changes.snapshot_chunks(), content_type="application/json")
    try:
        position = changes.parse_cursor(request.GET["cursor"])
    except changes.BadCursor as e:
        return error(str(e), 400, fields={"cursor": [str(e)]})
    return JsonResponse(changes.changes_since(position))


OPENAPI = Path(__file__).with_name("openapi.json")


@require_safe
def openapi(request: HttpRequest) -> HttpResponse:
    """The OpenAPI 3.1 description of every API endpoint, from blocklist/openapi.json."""
    return JsonResponse(_openapi_document())


@functools.cache
def _openapi_document() -> dict:
    return json.loads(OPENAPI.read_text())
