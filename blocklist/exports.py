"""The active blocklist in the formats mail servers load: rbldnsd, Postfix cidr:, plain and JSON.

Every format is a generator of text chunks that reads the database a chunk at a time, so an
export of a million entries uses the same memory as one of ten. Files are replaced atomically:
a mail server reloading mid-write sees the old list or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from itertools import islice
from json.encoder import encode_basestring_ascii as _json_str
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from blocklist.formats import delist_url
from blocklist.models import Entry, ListVersion

logger = logging.getLogger(__name__)

# Rows per database round trip and per yielded text chunk: big enough that per-chunk costs
# vanish, small enough that a chunk of JSON stays around a megabyte.
CHUNK_SIZE = 5000

FILE_NAMES = {
    "rbldnsd": "blocklist.rbldnsd",
    "postfix": "blocklist.postfix.cidr",
    "plain": "blocklist.txt",
    "json": "blocklist.json",
}
FORMATS = tuple(FILE_NAMES)
CONTENT_TYPES = {
    "rbldnsd": "text/plain; charset=utf-8",
    "postfix": "text/plain; charset=utf-8",
    "plain": "text/plain; charset=utf-8",
    "json": "application/json",
}
# What every DNSBL answers for a listed address.
RBLDNSD_A = "127.0.0.2"


def smtp_message(ip: str, url: str) -> str:
    """The text after "550 <code> " that senders see; the contract spells it out."""
    return (
        f"Access denied, banned sending IP [{ip}]; "
        f"To request removal from this list please visit {url} and follow the directions."
    )


def _link_prefix() -> str:
    # delist_url leaves IP addresses as they are (digits, hex, '.' and ':' need no quoting),
    # so the link for any address is this prefix plus the address: no per-row call.
    return delist_url("")


def _active_chunks(*fields: str) -> Iterator[list[tuple]]:
    """Lists of value tuples of the active entries, IPv4 before IPv6, in address order."""
    rows = (
        Entry.objects.active()
        .order_by("version", "network_start", "prefix_len")
        .values_list(*fields)
        .iterator(chunk_size=CHUNK_SIZE)
    )
    while chunk := list(islice(rows, CHUNK_SIZE)):
        yield chunk


def export_plain() -> Iterator[str]:
    for chunk in _active_chunks("network"):
        yield "".join([f"{network}\n" for (network,) in chunk])


def export_postfix() -> Iterator[str]:
    link = _link_prefix()
    for chunk in _active_chunks("network", "code"):
        yield "".join(
            [
                f"{network} 550 {code} {smtp_message(address, link + address)}\n"
                for network, code in chunk
                for address in (network.partition("/")[0],)
            ]
        )


def rbldnsd_txt() -> str:
    """The TXT template: rbldnsd puts the queried address where a lone $ stands.

    No SMTP code in it: the mail server that consults the zone writes its own reply code
    in front of the TXT, and a second code inside the text would only confuse senders.
    """
    link = _link_prefix().replace("$", "$$")  # a literal $ in the portal URL stays literal
    return smtp_message("$", link + "$")


def export_rbldnsd() -> Iterator[str]:
    """One rbldnsd `combined` dataset holding an ip4trie and an ip6trie section.

    Serve it with `rbldnsd ... bl.example.org:combined:/path/blocklist.rbldnsd`. Both sections
    are always present (an empty trie is valid), so the file's shape never depends on the data.
    """
    default = f":{RBLDNSD_A}:{rbldnsd_txt()}\n"
    yield "# Delist portal blocklist; serve as an rbldnsd combined dataset\n"
    yield f"$DATASET ip4trie:ipv4 @\n{default}"
    in_v6 = False
    for chunk in _active_chunks("version", "network"):
        if not in_v6 and chunk[-1][0] == 6:
            # The IPv6 section starts inside this chunk: split it there.
            split = next(i for i, (version, _network) in enumerate(chunk) if version == 6)
            yield "".join([f"{network}\n" for _version, network in chunk[:split]])
            yield f"$DATASET ip6trie:ipv6 @\n{default}"
            in_v6, chunk = True, chunk[split:]
        yield "".join([f"{network}\n" for _version, network in chunk])
    if not in_v6:
        yield f"$DATASET ip6trie:ipv6 @\n{default}"


def _json_item(network, code, reason, listed_at, expires_at) -> str:
    # Timestamps in ISO 8601 hold no character JSON would escape; every other string goes
    # through json's own C escaper, so the result is what json.dumps(entry_json(...)) writes.
    expires = f'"{expires_at.isoformat()}"' if expires_at else "null"
    return (
        f'{{"network": {_json_str(network)}, "code": {_json_str(code)}, "reason": {_json_str(reason)}, '
        f'"listed_at": "{listed_at.isoformat()}", "expires_at": {expires}}}'
    )


def export_json() -> Iterator[str]:
    """A JSON array of the entries exactly as the API shows them: the bytes of json.dumps(list).

    Items are entry_json's dicts written straight to text: building dicts (let alone model
    instances) and encoding them took half as long again for a million entries.
    test_exports holds the two to the same output.
    """
    separator = ""
    yield "["
    for chunk in _active_chunks("network", "code", "reason", "listed_at", "expires_at"):
        yield separator + ", ".join([_json_item(*row) for row in chunk])
        separator = ", "
    yield "]\n"


_GENERATORS = {
    "rbldnsd": export_rbldnsd,
    "postfix": export_postfix,
    "plain": export_plain,
    "json": export_json,
}


def export_chunks(fmt: str) -> Iterator[str]:
    """The export in one format as text chunks; ValueError for an unknown format."""
    try:
        return _GENERATORS[fmt]()
    except KeyError:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}") from None


def export_transaction() -> AbstractContextManager:
    """What to read a whole export in: a transaction on PostgreSQL, nothing elsewhere.

    Outside a transaction Django declares PostgreSQL's server-side cursor WITH HOLD, and the
    server then computes and stores the entire result before sending the first row; inside
    one, rows stream. On SQLite atomic() would hold the write lock (IMMEDIATE mode) for the
    length of the export, so there we read in autocommit.
    """
    return transaction.atomic() if connection.vendor == "postgresql" else nullcontext()


def write_export(fmt: str, path: str | os.PathLike) -> int:
    """Write one format to path ("-" for stdout) atomically; returns the bytes written.

    The temp file sits in the target's folder so os.replace is a rename on one file system.
    It is made 0644 before it gets its name: rbldnsd drops to its own user and must read it.
    """
    chunks = export_chunks(fmt)
    if str(path) == "-":
        written = 0
        with export_transaction():
            for chunk in chunks:
                written += sys.stdout.write(chunk)
        sys.stdout.flush()
        return written
    target = Path(path).absolute()
    _remove_stray_temps(target)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as out:
            with export_transaction():
                for chunk in chunks:
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            written = out.tell()
        os.replace(temp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_folder(target.parent)
    return written


TEMP_SUFFIX = ".tmp"
# A temp file of ours untouched for this long belongs to a write that died (killed, power
# lost): a live write touches its file with every megabyte.
STALE_TEMP_AGE = 60


def _remove_stray_temps(target: Path) -> None:
    """Delete the temp files that interrupted writes of target left beside it.

    Only names mkstemp made for this target (".<name>.<random>.tmp"), and only old ones: a
    younger one may be a write in progress in another process.
    """
    ours = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]+{re.escape(TEMP_SUFFIX)}")
    cutoff = time.time() - STALE_TEMP_AGE
    with os.scandir(target.parent) as found:
        for item in found:
            if ours.fullmatch(item.name) and item.is_file(follow_symlinks=False):
                with suppress(FileNotFoundError):  # another writer cleaned it first
                    if item.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(item.path)
                        logger.warning("removed %s, left by an interrupted export", item.path)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable: after a crash the folder holds the new file, not no file.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _exports_lock(folder: Path) -> Iterator[None]:
    """Serialises writers of one folder (web and worker may both refresh): whoever goes second
    reads the database after the first has finished, so the newest state is what stays."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(folder / ".export.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_all(folder: Path) -> list[Path]:
    paths = []
    for fmt, name in FILE_NAMES.items():
        path = folder / name
        size = write_export(fmt, path)
        logger.info("wrote %s export %s (%d bytes)", fmt, path, size)
        paths.append(path)
    return paths


def exports_write_all(directory: str | os.PathLike) -> list[Path]:
    """Write every format into directory under FILE_NAMES; returns the paths written."""
    folder = Path(directory)
    with _exports_lock(folder):
        return _write_all(folder)


# Names the version of the list the files in EXPORT_DIR hold.
MARKER = ".exported-through"


def list_version() -> int:
    """The count of changes to the active set so far (blocklist.audit bumps it; see ListVersion)."""
    return ListVersion.objects.filter(pk=1).values_list("version", flat=True).first() or 0


def _written_version(folder: Path) -> int | None:
    try:
        label, number = (folder / MARKER).read_text().split()
    except (OSError, ValueError):
        return None
    # An older portal wrote a bare event id here: anything else means "unknown", so rewrite.
    return int(number) if label == "version" and number.isdigit() else None


def exports_written() -> tuple[int | None, float] | None:
    """(the version the files in EXPORT_DIR hold, when that was written as a Unix time), or None
    while EXPORT_DIR is unset or nothing was written yet (for /metrics)."""
    if not settings.EXPORT_DIR:
        return None
    folder = Path(settings.EXPORT_DIR)
    try:
        written_at = (folder / MARKER).stat().st_mtime
    except OSError:
        return None
    return _written_version(folder), written_at


def _refresh(*, only_if_changed: bool) -> list[Path]:
    if not settings.EXPORT_DIR:
        return []
    folder = Path(settings.EXPORT_DIR)
    with _exports_lock(folder):
        for name in FILE_NAMES.values():
            _remove_stray_temps(folder / name)
        # Read before the files: a change committed meanwhile has a newer version than the
        # marker gets, so the next refresh writes again.
        version = list_version()
        if (
            only_if_changed
            and _written_version(folder) == version
            and all((folder / name).exists() for name in FILE_NAMES.values())
        ):
            return []
        paths = _write_all(folder)
        temp = folder / f"{MARKER}{TEMP_SUFFIX}"
        temp.write_text(f"version {version}\n")
        os.replace(temp, folder / MARKER)
    return paths


def exports_refresh() -> list[Path]:
    """Rewrite all exports in settings.EXPORT_DIR; a no-op returning [] when it is unset.

    On failure it raises OSError and the previous files stay in place, complete.
    """
    return _refresh(only_if_changed=False)


def exports_refresh_if_changed() -> list[Path]:
    """exports_refresh(), but only when the active set changed since the files were written
    (or one of them is missing). A marker beside them holds the version they show."""
    return _refresh(only_if_changed=True)
