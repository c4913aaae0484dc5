# gunicorn reads this file from the working directory (the image's /app, a checkout's root).
# Confirmation links carry a token: the access log shows /confirm/[redacted] instead. With
# LOG_FORMAT=json the access and error logs are JSON lines (portal_lib/gunicorn_logging.py).
logger_class = "portal_lib.gunicorn_logging.RedactingLogger"
accesslog = "-"

# Sizing, from bench/load.py on 2 cores (docs/benchmarks.md, "Load"). The portal is CPU-bound:
# a request of the mix costs gunicorn 5 to 6 ms of CPU, so throughput follows the cores gunicorn
# gets, whatever the layout below; the layout decides what waits where.
# - workers: one per core plus one, so both cores stay busy while a worker waits for PostgreSQL
#   or Redis. WEB_CONCURRENCY (gunicorn's own name) overrides it. Each thread keeps a database
#   connection (CONN_MAX_AGE): keep workers × threads well under PostgreSQL's max_connections.
# - threads: 4, so a slow dependency (a Redis time-out, the submissions' mail-limit lock) holds
#   a thread, not a whole worker. Measured: the same throughput on the mix as 3 single-threaded
#   workers (about 10% more CPU a request, inside the noise), 1.7x on the cheapest request.
# - worker_connections: a worker accepts twice its threads. At gunicorn's 1000 one worker took in
#   connections the others were free for (p99 up to 5.7x p50 at 200 clients, 1.2x to 2.2x
#   bounded); the rest wait in the kernel's backlog for whichever worker is free first.
# - timeout 30 s: a worker silent that long is restarted (with threads, a stuck process; a slow
#   request does not count). A request's own work here is 2 to 60 ms.
# - graceful_timeout 8 s: on SIGTERM a worker finishes the few requests it has accepted, well
#   inside the 10 s `docker compose stop` waits before it kills.
# Anything else through GUNICORN_CMD_ARGS ("--keep-alive 5"), which wins over this file; threads
# through GUNICORN_THREADS, so that worker_connections follows.
import os  # noqa: E402  (the logger line above stays first)
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402


def _whole(name: str, default: int) -> int:
    value = os.environ.get(name, "") or str(default)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


workers = _whole("WEB_CONCURRENCY", 3)
threads = _whole("GUNICORN_THREADS", 4)
worker_connections = 2 * threads
timeout = 30
graceful_timeout = 8
# The heartbeat file in memory: on a container's disk-backed /tmp, updating it can stall a
# worker long enough to be killed as silent.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"


def _log_format() -> str:
    from delist_portal.env import envsecret
    from portal_lib.json_logging import log_format

    try:
        return log_format(envsecret("LOG_FORMAT"))
    except ValueError as e:
        raise SystemExit(str(e)) from None


# A typo stops gunicorn here, before any worker boots; the logger class reads the verdict.
from portal_lib.gunicorn_logging import RedactingLogger  # noqa: E402

RedactingLogger.json = _log_format() == "json"

# /metrics' HTTP counters (portal_lib/metrics.py): each worker writes its counts to files in
# PROMETHEUS_MULTIPROC_DIR and a scrape adds them all up, so the totals are the same whichever
# worker answers, and survive a worker's restart. Set here, before any worker imports
# prometheus-client. Unset, a folder of our own in memory, removed when gunicorn exits; an
# operator's folder is emptied at start, as prometheus-client requires.
# (A reload, on SIGHUP, reads this file again: the folder made the first time is kept.)
_OWN = "DELIST_METRICS_DIR_OWNED"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="delist-metrics-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    os.environ[_OWN] = "1"


def on_starting(server) -> None:
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    # Its counts stay in the totals; only its live gauges (none today) are dropped.
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if os.environ.get(_OWN):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
