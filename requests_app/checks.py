"""Start-up checks for the delist settings: a value out of range stops the portal."""

from django.conf import settings
from django.core.checks import Error, register

# name: (lowest, highest, what it means)
BOUNDS = {
    "DELIST_PROPAGATION_DELAY": (0, 86400, "seconds from approval to removal"),
    "DELIST_TOKEN_TTL": (60, 7 * 86400, "seconds a confirmation link stays valid"),
    "DELIST_SWEEP_INTERVAL": (1, 3600, "seconds between sweeps"),
    "TRUSTED_PROXY_COUNT": (0, 10, "reverse proxies in front of the portal"),
    "DELIST_SELF_SERVICE_LIMIT": (0, 1000, "self-service delistings of one IP per window"),
    "DELIST_SELF_SERVICE_WINDOW_DAYS": (1, 3650, "days the self-service limit counts"),
    "RATELIMIT_IPV6_MASK": (32, 128, "prefix length that buckets IPv6 clients for rate limits"),
    "DELIST_REVIEW_WIDE_PREFIX_V4": (0, 32, "IPv4 prefix below which approving needs a superuser"),
    "DELIST_REVIEW_WIDE_PREFIX_V6": (0, 128, "IPv6 prefix below which approving needs a superuser"),
    "DELIST_MAIL_GIVE_UP": (3600, 30 * 86400, "seconds after which an unsendable mail is marked failed"),
}


@register("delist")
def check_delist_settings(app_configs=None, **kwargs):
    errors = []
    for number, (name, (low, high, meaning)) in enumerate(BOUNDS.items(), start=1):
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            errors.append(
                Error(
                    f"{name}={value!r} is out of range: it must be {low} to {high} ({meaning}).",
                    hint=f"Set {name} to a whole number from {low} to {high}.",
                    id=f"delist.E{number:03d}",
                )
            )
    if not settings.PORTAL_BASE_URL.startswith(("http://", "https://")):
        errors.append(
            Error(
                f"PORTAL_BASE_URL={settings.PORTAL_BASE_URL!r} must start with http:// or https://.",
                id="delist.E100",
            )
        )
    return errors
