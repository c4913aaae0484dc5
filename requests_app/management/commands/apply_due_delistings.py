from django.core.management.base import BaseCommand

from requests_app.outbox import mails_send_due
from requests_app.services import sweep


class Command(BaseCommand):
    help = "Run one sweep: apply due delistings, expire stale requests, then send owed mail (for cron)."

    def handle(self, *args, **options):
        self.stdout.write(str(sweep()))
        self.stdout.write(f"{mails_send_due()} mail(s) sent")
