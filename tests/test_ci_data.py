"""In CI (CI=true) a test that needs the shared data or peer models fails when they are missing; for a user
without them it skips with the reason. Checked by running pytest on real tests of this suite in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

DATA_TEST = "tests/test_protocol.py::test_bicubic_on_set14_x2"  # needs $EDGE_SR_DATA
PEERS_TEST = "tests/test_bench.py::test_real_peer_upscales"  # skipif: peer models absent ($EDGE_SR_PEERS)


def _pytest(test_id, tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("CI", "EDGE_SR_DATA", "EDGE_SR_PEERS")}
    e.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test_id],
                          cwd=REPO, env=e, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("ci", ["", "true"])
def test_missing_data_skips_for_users_and_fails_in_ci(tmp_path, ci):
    r = _pytest(DATA_TEST, tmp_path, CI=ci, EDGE_SR_DATA=str(tmp_path / "no-data"))
    out = r.stdout + r.stderr
    if ci:
        assert r.returncode == 1 and ("1 failed" in out or "1 error" in out) and "CI=true and the shared data is missing" in out, out[-1500:]
    else:
        assert r.returncode == 0 and "1 skipped" in out and "$EDGE_SR_DATA" in out, out[-1500:]


def test_missing_peers_fail_in_ci(tmp_path):
    src = (REPO / PEERS_TEST.split("::")[0]).read_text()
    if PEERS_TEST.split("::")[1] not in src or "$EDGE_SR_PEERS" not in src:
        pytest.skip(f"{PEERS_TEST} no longer exists or no longer names $EDGE_SR_PEERS")
    r = _pytest(PEERS_TEST, tmp_path, CI="true", EDGE_SR_PEERS=str(tmp_path / "no-peers"))
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "CI=true and the shared data is missing" in out, out[-1500:]
