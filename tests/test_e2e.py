"""Slow tier: the whole path, corpus -> shards -> training from scratch -> infilling evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_end_to_end_fim_training(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "e2e_train_fim.py"), "--out", str(tmp_path / "e2e"),
                           "--minutes", "2", "--limit", "30"],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(Path(tmp_path / "e2e" / "e2e.json").read_text())
    curve = report["loss_curve (step, train, val)"]
    assert curve[-1][1] < curve[0][1] - 1.0  # it learned something about code
    assert set(report["single_line_infilling_pass@1"]) == {"trained", "untrained"}
