"""The training loop (`mdp.loop.TrainLoop`) on a fake trainer, one process: the
checkpoint cadence, `stop_after`, the deadline, an end moved by a hook, lagged logging."""

from __future__ import annotations

import json
import time

import pytest

from mdp import loop as loop_mod


class _Trainer:
    device = "cpu"

    def __init__(self) -> None:
        self.steps: list[int] = []

    def step(self, step: int) -> dict:
        self.steps.append(step)
        return {"step": step, "loss": 1.0 / (step + 1), "lr": 0.1}


@pytest.fixture
def saves(monkeypatch) -> list[int]:
    saved: list[int] = []
    monkeypatch.setattr(loop_mod.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(loop_mod.dist, "get_world_size", lambda: 1)
    monkeypatch.setattr(loop_mod.checkpoint, "save_step", lambda d, step, t, extra, keep: saved.append(step))
    return saved


def _loop(tmp_path, trainer, **kw) -> loop_mod.TrainLoop:
    args = dict(name="t", out_dir=str(tmp_path), ckpt_dir=str(tmp_path / "ck"), start=0, steps=7, save_every=3,
                keep_checkpoints=1, extra={}, plot=False)
    args.update(kw)
    return loop_mod.TrainLoop(trainer, **args)


def test_cadence_stop_after_and_resume(tmp_path, saves) -> None:
    t = _Trainer()
    lp = _loop(tmp_path, t)
    assert lp.run() and t.steps == list(range(7)) and saves == [2, 5, 6]  # every 3 and the last
    assert [r["step"] for r in json.loads((tmp_path / "loss.json").read_text())] == list(range(7))
    saves.clear()
    t = _Trainer()
    assert not _loop(tmp_path, t, stop_after=4).run() and t.steps == [0, 1, 2, 3] and saves == [2]
    t = _Trainer()
    assert _loop(tmp_path, t, start=4).run() and t.steps == [4, 5, 6]


def test_deadline_checkpoints_and_stops(tmp_path, saves) -> None:
    t = _Trainer()

    def late(lp, step):  # the clock runs out before step 2
        if step == 2:
            lp.deadline = time.monotonic() - 1

    lp = _loop(tmp_path, t, save_every=0, before_step=late)
    assert not lp.run() and t.steps == [0, 1] and saves == [1] and lp.end == 2


def test_hook_moves_the_end(tmp_path, saves) -> None:
    for total, ran in ((4, 4), (9, 9)):  # shrunk and grown past the first end
        t, seen = _Trainer(), []
        lp = _loop(tmp_path, t, save_every=0, save_at_end=True,
                   before_step=lambda lp, step: lp.resize(total) if step == 2 else None,
                   after_step=lambda lp, step: seen.append(step))
        saves.clear()
        assert lp.run() and t.steps == list(range(ran)) and seen == t.steps and saves == [ran - 1]


def test_lagged_records_are_read_one_step_late(tmp_path, saves) -> None:
    read: list[tuple[int, int]] = []
    t = _Trainer()

    def materialize(rec: dict) -> dict:
        read.append((rec["step"], len(t.steps)))
        return dict(rec)

    lp = _loop(tmp_path, t, lagged=materialize, log_every=4)
    assert lp.run()
    # step s is read after step s + 1 was launched (the last one at the end)
    assert read == [(s, min(s + 2, 7)) for s in range(7)]
    assert [r["step"] for r in lp.records] == list(range(7)) and all("seconds" in r for r in lp.records)
    assert len(json.loads((tmp_path / "loss.json").read_text())) == 7
