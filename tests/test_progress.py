"""One progress convention: a bar on a terminal, periodic log lines otherwise, nothing on other ranks."""

from __future__ import annotations

from vjepa.progress import Progress, hms, track


def test_lines_in_logs_with_counts_rate_eta_and_values(capsys):
    with Progress(4, "caching train", unit="batch", mode="lines", interval_s=0.0) as progress:
        for k in range(4):
            progress.update(1, loss=f"{k:.1f}")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("caching train: 1/4 batches (25%), eta ") and out[0].endswith("loss 0.0")
    assert "done in" in out[-1] and out[-1].startswith("caching train: 4/4 batches")
    assert len(out) == 5  # one per update (interval 0) and the final one


def test_short_work_leaves_no_line_and_other_ranks_stay_silent(capsys):
    assert list(track(range(3), 3, "scoring")) == [0, 1, 2]  # pytest's stderr is no terminal: line mode
    with Progress(3, "quiet", enabled=False) as progress:
        progress.update(3)
        progress.write("not shown")
    with Progress(3, "own lines", mode="lines", interval_s=0.0, lines=False) as progress:
        progress.update(3)
        assert not progress.terminal
        progress.write("a message", err=True)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "a message\n"


def test_a_bar_on_a_terminal(capsys):
    with Progress(2, "pretraining", unit="step", mode="bar") as progress:
        assert progress.terminal
        progress.update(2, loss="0.5")
    assert "pretraining" in capsys.readouterr().err
    assert hms(3725) == "1:02:05"
