from django.core.management.base import BaseCommand, CommandError

from blocklist.api_keys import ApiKeyError, Scope, api_key_create, api_key_revoke, requests_made
from blocklist.models import ApiKey


class Command(BaseCommand):
    help = "Create, list and revoke the API keys machines use (Authorization: Bearer <key>)."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
        create = actions.add_parser("create", help="make a key and print it, once")
        create.add_argument("name", help="who uses it, e.g. rspamd-feed (the audit trail shows it)")
        create.add_argument("--scope", required=True, choices=Scope.values)
        actions.add_parser("list", help="every key, with its use")
        revoke = actions.add_parser("revoke", help="stop a key working (its next call gets 401)")
        revoke.add_argument("name")

    def handle(self, *args, action: str, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except ApiKeyError as e:
            raise CommandError(str(e)) from None

    def _create(self, *, name: str, scope: str, **options):
        api_key, key = api_key_create(name=name, scope=scope)
        self.stderr.write(f"{scope} key {api_key.name} created; it is shown only this once:")
        self.stdout.write(key)

    def _list(self, **options):
        keys = list(ApiKey.objects.all())
        made = requests_made(keys)
        for key in keys:
            used = f"{key.last_used_at:%Y-%m-%d %H:%M} UTC" if key.last_used_at else "never"
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M} UTC" if key.revoked_at else "live"
            self.stdout.write(
                f"{key.name}\t{key.scope}\t{key.prefix}…\tcreated {key.created_at:%Y-%m-%d %H:%M} UTC\t"
                f"last used {used}\t{made[key.pk]} requests\t{state}"
            )

    def _revoke(self, *, name: str, **options):
        if api_key_revoke(name=name):
            self.stdout.write(f"revoked {name}")
        else:
            self.stdout.write(f"{name} was revoked already")
