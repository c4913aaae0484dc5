import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "delist_portal.settings")

application = get_wsgi_application()

from delist_portal.startup import require_valid_settings, warm_up  # noqa: E402  (needs the apps loaded)

require_valid_settings()
warm_up()
