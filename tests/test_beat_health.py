"""Beat's health check judges the age of the schedule file beat rewrites after each task sent."""

from __future__ import annotations

import os

from delist_portal.beat_health import MARGIN_SECONDS, beat_problem, schedule_age

NOW = 1_700_000_000.0  # any fixed moment: only differences count


def _written(path, seconds_ago: float) -> None:
    path.write_bytes(b"schedule")
    os.utime(path, (NOW - seconds_ago, NOW - seconds_ago))


def test_a_schedule_written_within_two_intervals_is_healthy(tmp_path):
    schedule = tmp_path / "celerybeat-schedule"
    _written(schedule, 2 * 30 + MARGIN_SECONDS)
    assert beat_problem(str(schedule), 30, NOW) is None


def test_a_schedule_older_than_two_intervals_and_the_margin_is_not(tmp_path):
    schedule = tmp_path / "celerybeat-schedule"
    _written(schedule, 2 * 30 + MARGIN_SECONDS + 1)
    problem = beat_problem(str(schedule), 30, NOW)
    assert problem is not None and "not ticking" in problem and "91 s ago" in problem


def test_no_schedule_means_beat_has_not_started(tmp_path):
    problem = beat_problem(str(tmp_path / "celerybeat-schedule"), 30, NOW)
    assert problem is not None and "has not started" in problem


def test_the_newest_of_the_dbm_files_counts(tmp_path):
    # dbm.dumb keeps a shelve in .dat, .dir and .bak files beside the name beat was given.
    base = tmp_path / "celerybeat-schedule"
    _written(tmp_path / "celerybeat-schedule.dir", 500)
    _written(tmp_path / "celerybeat-schedule.dat", 5)
    assert schedule_age(str(base), NOW) == 5
