"""Times as a sender reads them: in the page's language, always in UTC, and saying so."""

from datetime import UTC, datetime, timedelta

from django import template
from django.utils import dateformat, timezone
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext, pgettext

register = template.Library()


@register.filter
def utc_date(value: datetime | None) -> str:
    """'30 November 2025' in English, '30 november 2025' in Swedish."""
    if value is None:
        return ""
    # Translators: a date in Django's date format characters (j = day, F = month name, Y = year).
    return dateformat.format(value.astimezone(UTC), pgettext("date format", "j F Y"))


@register.filter
def utc_time(value: datetime | None) -> str:
    """'14:30', without the zone: the sentence around it names UTC."""
    if value is None:
        return ""
    return dateformat.format(value.astimezone(UTC), "H:i")


@register.filter
def moment(value: datetime | None) -> str:
    """'30 November 2025, 14:30 UTC' in English, '30 november 2025 kl. 14:30 UTC' in Swedish."""
    if value is None:
        return ""
    return gettext("%(date)s, %(time)s UTC") % {"date": utc_date(value), "time": utc_time(value)}


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


@register.filter
def duration(seconds: int) -> str:
    """A delay in words: '1 hour', '25 minutes'."""
    if seconds < 60:
        return gettext("less than a minute")
    start = timezone.now()
    return timesince(start, start + timedelta(seconds=seconds))


@register.filter
def html_datetime(value: datetime | None) -> str:
    """A <time datetime="..."> value: UTC, to the second. Django's 'c' format carries
    microseconds, and HTML allows at most three digits of a fraction (the Nu Html Checker
    refuses six)."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
