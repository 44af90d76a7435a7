"""`perfmodel demo` (what `make demo` runs): the table, the roofline PNG, and op labels
that do not overlap."""

import itertools
import pathlib

import pytest

from perfmodel import _demo
from perfmodel._cli import main

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def results():
    return _demo._evaluate_all()


def test_demo_command_prints_table_and_writes_png(results, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_demo, "_evaluate_all", lambda: results)
    assert main(["demo", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    for hw in _demo.HARDWARE:
        for phase in _demo.PHASES:
            assert any(line.split()[:2] == [hw, phase] for line in out.splitlines()), out
    png = pathlib.Path(tmp_path / "out" / "roofline.png")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"written to {png}" in out


def test_roofline_labels_do_not_overlap(results):
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    fig, texts = _demo.roofline_figure(results)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        frame = fig.axes[0].get_window_extent(renderer)
        boxes = [Text.get_window_extent(t, renderer) for t in texts]
        names = {n for t in texts for line in t.get_text().splitlines()
                 for n in line.split(", ")}
        # every op with FLOPs is named once per cluster, so all of them appear
        assert {"qkv_proj", "attn_fused", "ffn_up", "ffn_down", "lm_head"} <= names
        for (a, ta), (b, tb) in itertools.combinations(zip(boxes, texts), 2):
            assert not a.overlaps(b), (ta.get_text(), tb.get_text())
        for box, t in zip(boxes, texts):
            assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), \
                t.get_text()
    finally:
        plt.close(fig)
