"""Table cells as kubectl prints them: ages and durations in kube's words."""

from __future__ import annotations

import pytest

from netplane.cluster.apiserver.tables import human_duration

# (seconds, what kube's duration.HumanDuration writes)
DURATIONS = [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"),
             (150, "2m30s"), (600, "10m"), (3600, "60m"), (5400, "90m"), (10800, "3h"),
             (10860, "3h1m"), (28800, "8h"), (86400, "24h"), (172800, "2d"),
             (180000, "2d2h"), (691200, "8d"), (2 * 365 * 86400, "2y"),
             (3 * 365 * 86400 + 86400, "3y1d"), (9 * 365 * 86400, "9y")]


@pytest.mark.parametrize(("seconds", "words"), DURATIONS)
def test_durations_read_as_kubes_human_duration(seconds: int, words: str) -> None:
    assert human_duration(seconds) == words
