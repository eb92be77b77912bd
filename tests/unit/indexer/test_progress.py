"""Progress bars: one line per LOG_INTERVAL_S in a log, redrawn in place on a terminal."""

from __future__ import annotations

import io

import pytest

from indexer import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_few_plain_lines_not_one_per_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", log)
    with progress.progress_bar(total=5000, desc="embedding", file=log) as bar:
        for step in range(5000):
            bar.update(1)
            bar.set_postfix(loss=f"{step:.4f}", refresh=False)  # as the training loops do
    lines = [line for line in log.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, lines  # the first draw, the last, nothing between
    assert lines[-1].startswith("embedding: 100%")
    assert all(line.isascii() for line in lines)


def test_a_terminal_keeps_tqdm_s_own_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress.sys, "stderr", _Terminal())
    with progress.progress_bar(total=1, file=io.StringIO()) as bar:
        assert bar.mininterval == pytest.approx(0.1)
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    with progress.progress_bar(total=1, file=io.StringIO()) as quiet:
        assert quiet.mininterval == progress.LOG_INTERVAL_S
