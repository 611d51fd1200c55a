"""A lab's options: saved at its first ``up``, kept by later ones unless
given again, and turned into the server's flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane.lab import options
from netplane.lab.options import LabOptions
from netplane.lab.paths import LabPaths


def test_kube_defaults_need_no_flags_and_short_ones_are_passed() -> None:
    assert LabOptions().server_flags() == []
    assert LabOptions(node_grace=10, toleration_seconds=20).server_flags() == [
        "--node-monitor-grace-period", "10", "--node-monitor-period", "2.5",
        "--default-not-ready-toleration-seconds", "20",
        "--default-unreachable-toleration-seconds", "20"]


def test_saved_options_stay_unless_given_again(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    lab = LabPaths("t1")
    monkeypatch.setattr(LabPaths, "state_dir", property(lambda self: tmp_path))
    assert options.load(lab) == LabOptions()
    options.save(lab, LabOptions(proxy_mode="ipvs", node_grace=10))
    saved = options.load(lab)
    assert saved == LabOptions(proxy_mode="ipvs", node_grace=10)
    assert options.merged(saved, toleration_seconds=20) == LabOptions(
        proxy_mode="ipvs", node_grace=10, toleration_seconds=20)
    assert options.merged(saved, proxy_mode="nftables", node_grace=15) == LabOptions(
        proxy_mode="nftables", node_grace=15)


def test_a_scheduler_config_becomes_the_servers_flag() -> None:
    flags = LabOptions(scheduler_config="/run/x/scheduler-config.yaml").server_flags()
    assert flags == ["--scheduler-config", "/run/x/scheduler-config.yaml"]
    assert options.merged(LabOptions(scheduler_config="/a"), node_grace=5).scheduler_config \
        == "/a"
