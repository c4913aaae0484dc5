from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timeuntil
from django.utils.translation import gettext

register = template.Library()


@register.filter
def about_until(value: datetime | None) -> str:
    """'in about 25 minutes' for something due in 24 minutes 40 seconds, as people say it."""
    if value is None:
        return ""
    left = value - timezone.now()
    if left <= timedelta(0):
        return gettext("any moment now")
    if left < timedelta(seconds=30):
        return gettext("in less than a minute")
    # Round to the nearest minute rather than down.
    return gettext("in about %(time)s") % {"time": timeuntil(value, value - left - timedelta(seconds=30))}
