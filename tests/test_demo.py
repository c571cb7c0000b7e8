"""The demo (quick mode): one table, report.md and the PNG plots, with the paper-scale commands."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from simplexity_lab.cli import main


def test_demo_quick_writes_report_and_plots(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| paper | model | method | result | reproduce at paper scale |" in out
    for method in ("Gumbel-softmax", "IGR-I", "IGR-SB", "sparsemax", "entmax-1.5", "ev-softmax",
                   "mixture base"):  # fmt: skip
        assert f"| {method}" in out
    report = (tmp_path / "report.md").read_text()
    for command in ("simplexity run vae --budget paper", "simplexity run cvae --budget paper",
                    "simplexity run flow2d --budget paper"):  # fmt: skip
        assert command in report
    assert "| ev_softmax |" in report and "Padding" in report  # the normalizer tour
    pngs = {p.name for p in tmp_path.glob("*.png")}
    assert {"vae_reconstructions.png", "cvae_priors.png", "cvae_latent_priors.png",
            "flow_densities.png"} <= pngs  # fmt: skip
    for png in pngs:
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({png})" in report
