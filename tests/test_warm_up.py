"""The web process builds at boot what Django would build on the first requests, so that a new
worker's first submissions do not each compile the email validator's expressions."""

import json

from tests.test_configuration import start

# Run in a fresh process: what is built before and after the WSGI module is imported.
PROBE = """
import json
import django
django.setup()
from django.core.validators import EmailValidator
from django.db import connection
from django.template import engines
from django.utils.functional import empty
from django.utils.translation import trans_real

def built():
    loader = engines["django"].engine.template_loaders[0]
    return {
        "email expressions": [
            getattr(EmailValidator, name)._wrapped is not empty
            for name in ("user_regex", "domain_regex", "literal_regex")
        ],
        "catalogues": sorted(trans_real._translations),
        "templates": sorted(key for key in loader.get_template_cache if isinstance(key, str)),
    }

before = built()
import delist_portal.wsgi
print(json.dumps({"before": before, "after": built(), "connected": connection.connection is not None}))
"""


def test_importing_the_wsgi_module_builds_the_forms_expressions_catalogues_and_start_page():
    result = start(PROBE)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    before = seen["before"]
    assert before["email expressions"] == [False, False, False]
    assert "sv" not in before["catalogues"] and not before["templates"]
    after = seen["after"]
    # The literal form (user@[192.0.2.1]) is compiled only for such an address: not on the way.
    assert after["email expressions"] == [True, True, False]
    assert after["catalogues"] == ["en", "sv"]
    assert {"requests_app/home.html", "base.html"} <= set(after["templates"])
    assert not seen["connected"]  # and it asked the database nothing
