import os
import sys

from django.core.management.base import BaseCommand, CommandError

from blocklist.importing import SOURCE_MAX, ImportStopped, UnreadableList, import_file


class Command(BaseCommand):
    help = (
        "Add the networks of a list to the blocklist (never removes): plain, one IP or CIDR per line "
        "with # comments, or CSV with the columns network,code,reason,expires_at,source."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path of the list, or - for standard input")
        parser.add_argument(
            "--format",
            choices=["auto", "plain", "csv"],
            default="auto",
            help="auto: CSV when the file ends in .csv or its first line has a comma",
        )
        parser.add_argument(
            "--source", default="import", help="source of new entries when the line names none"
        )

    def handle(self, *args, file: str, format: str, source: str, **options):
        if len(source) > SOURCE_MAX:
            raise CommandError(f"--source is longer than {SOURCE_MAX} characters")
        try:
            # Bytes, read a bounded line at a time: importing decodes and checks each line itself.
            stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
        except OSError as e:
            raise CommandError(f"cannot read {file}: {e.strerror}") from e
        with stream:
            progress = _Progress(self.stderr, stream) if self.stderr.isatty() and file != "-" else None
            try:
                summary = import_file(
                    stream,
                    name=file,
                    fmt=format,
                    source=source,
                    on_reject=lambda number, text, why: self.stderr.write(
                        f"line {number}: {text!r} rejected: {why}"
                    ),
                    on_batch=progress.update if progress else None,
                )
            except UnreadableList as e:
                raise CommandError(f"cannot import {file}: {e}; nothing was imported") from e
            except ImportStopped as e:
                self.stdout.write(str(e.summary))
                raise CommandError(f"{file}: {e}") from e
            except OSError as e:  # a disk failing midway; the batches before it are in, whole
                raise CommandError(f"cannot read {file}: {e.strerror or e}") from e
            finally:
                if progress:
                    progress.done()
        self.stdout.write(str(summary))


class _Progress:
    """A one-line progress bar for a terminal: bytes read of the file's size."""

    def __init__(self, out, stream):
        self.out = out
        self.stream = stream
        self.size = max(1, os.fstat(stream.fileno()).st_size)

    def update(self, line: int) -> None:
        share = min(1.0, self.stream.tell() / self.size)
        bar = "#" * int(share * 30)
        self.out.write(f"\r[{bar:<30}] {share:4.0%} {line} lines", ending="", style_func=str)
        self.out.flush()

    def done(self) -> None:
        self.out.write("\r" + " " * 60 + "\r", ending="", style_func=str)
