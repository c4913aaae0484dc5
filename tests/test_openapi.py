"""GET /api/v1/openapi.json describes every API endpoint, in the shapes the API answers with."""

from __future__ import annotations

import re

from django.urls import reverse

from blocklist.formats import entry_api_json, entry_json
from blocklist.urls import urlpatterns


def document(client) -> dict:
    response = client.get(reverse("blocklist:api_openapi"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


def test_it_is_openapi_3_1(client, db):
    doc = document(client)
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key, or EXPORT_TOKEN (read)",
    }


def test_every_api_url_is_described(client, db):
    paths = set(document(client)["paths"])
    for pattern in urlpatterns:
        route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        assert f"/api/v1/{route}" in paths, route


def test_the_entry_schemas_name_the_fields_the_api_answers_with(client, listed):
    schemas = document(client)["components"]["schemas"]
    entry = listed["single"]
    assert (
        set(schemas["Entry"]["properties"]) == set(entry_api_json(entry)) == set(schemas["Entry"]["required"])
    )
    assert set(schemas["PublicEntry"]["properties"]) == set(entry_json(entry))
