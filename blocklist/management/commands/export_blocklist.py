from django.core.management.base import BaseCommand, CommandError

from blocklist.exports import FORMATS, export_chunks, export_transaction, write_export


class Command(BaseCommand):
    help = (
        "Write the active blocklist in one format. A file is replaced atomically "
        "(temp file + rename), so a mail server never reads half of it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt", help="export format")
        parser.add_argument("--output", default="-", help="file to write, or - (default) for stdout")

    def handle(self, *args, fmt: str, output: str, **options):
        if output == "-":
            # Through self.stdout so call_command(stdout=...) captures it; ending="" keeps
            # the chunks exactly as they are.
            with export_transaction():
                for chunk in export_chunks(fmt):
                    self.stdout.write(chunk, ending="")
            return
        try:
            size = write_export(fmt, output)
        except OSError as e:
            raise CommandError(f"cannot write {output}: {e.strerror or e}") from e
        self.stdout.write(f"wrote {fmt} export to {output} ({size} bytes)")
