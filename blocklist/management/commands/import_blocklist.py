import sys

from django.core.management.base import BaseCommand, CommandError

from blocklist.services import blocklist_import_plain


class Command(BaseCommand):
    help = "Add the networks of a plain list (one IP or CIDR per line, # comments) to the blocklist."

    def add_arguments(self, parser):
        parser.add_argument("file", help="path of the list, or - for standard input")
        parser.add_argument("--source", default="import", help="recorded as each new entry's source")

    def handle(self, *args, file: str, source: str, **options):
        try:
            stream = sys.stdin if file == "-" else open(file, encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise CommandError(f"cannot read {file}: {e.strerror}") from e
        with stream:
            summary = blocklist_import_plain(stream, source=source)
        for number, text, why in summary.rejected:
            self.stderr.write(f"line {number}: {text!r} rejected: {why}")
        self.stdout.write(
            f"added {summary.added}, unchanged {summary.unchanged}, rejected {len(summary.rejected)}"
        )
