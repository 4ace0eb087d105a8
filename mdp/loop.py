"""The training loop: the steps of a plain run (`mdp.train.run`) and of each stage of
the staged run (`mdp.curriculum.run`).

It owns what every run needs around `trainer.step`: the loss log and progress bar
(rank 0), the checkpoint cadence (every `save_every` steps and at the last), a
deadline agreed across ranks (checkpoint, then stop), `stop_after`, and the lagged
logging of steps whose values stay on the device. What a caller adds per step comes
in through two hooks: `before_step` (the staged run re-fits its plan there, which
may move the end: `resize`) and `after_step` (the held-out probe).
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch
import torch.distributed as dist

from mdp import checkpoint
from mdp.log import BufferedTrainLog, logged_step


def agree(value: float, device) -> float:
    """Rank 0's value on every rank (time-based decisions must be collective)."""
    if dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t.item())


def deadline_after(seconds: float | None) -> float:
    """A `time.monotonic` deadline `seconds` from now; none (inf) for None or seconds <= 0."""
    return time.monotonic() + seconds if seconds is not None and seconds > 0 else float("inf")


Hook = Callable[["TrainLoop", int], None]


class TrainLoop:
    """Steps [start, steps) of one run (collective on every rank).

    `extra` is the checkpoint's non-tensor state (`checkpoint.save_step`).
    `lagged`: the trainer's step returns device values and this reads them; the
    loop logs a step once the next one is launched, so reading waits for that
    step only. `save_at_end`: also checkpoint the last step when the cadence did
    not (a later stage continues from it)."""

    def __init__(self, trainer, *, name: str, out_dir: str, ckpt_dir: str, start: int, steps: int,
                 save_every: int, keep_checkpoints: int, extra: dict, log_every: int = 1, plot: bool = True,
                 stop_after: int | None = None, deadline: float = float("inf"),
                 lagged: Callable[[dict], dict] | None = None, save_at_end: bool = False,
                 before_step: Hook | None = None, after_step: Hook | None = None) -> None:
        from tqdm import tqdm

        self.trainer, self.ckpt_dir, self.extra = trainer, ckpt_dir, extra
        self.save_every, self.keep, self.plot = save_every, keep_checkpoints, plot
        self.stop_after, self.deadline, self.lagged, self.save_at_end = stop_after, deadline, lagged, save_at_end
        self.before_step, self.after_step = before_step, after_step
        self.rank0 = dist.get_rank() == 0
        self.start = start
        self.saved = start - 1  # the last step with a checkpoint
        self.seconds: list[float] = []  # per step: its time (lagged: its launch + the previous step's wait)
        self.records: list[dict] = []
        self.log = BufferedTrainLog(out_dir, start, log_every) if self.rank0 else None
        self.bar = tqdm(total=steps, initial=start, desc=f"train {name}", unit="step", file=sys.stderr,
                        disable=not self.rank0)
        self.resize(steps)
        self._pending: tuple[dict, float] | None = None

    def resize(self, steps: int) -> None:
        """The run now ends after `steps` steps (the cadence's last save moves with it)."""
        self.steps = steps
        self.end = steps if self.stop_after is None else min(steps, self.stop_after)
        self.bar.total = steps

    @property
    def finished(self) -> bool:
        return self.end >= self.steps

    def run(self) -> bool:
        """Train to the end (or the deadline); returns whether every step of the run is done."""
        step = self.start
        while step < self.end:  # a while, not a range: `before_step` may move the end
            if self.before_step is not None:
                self.before_step(self, step)
                if step >= self.end:
                    break
            if self.deadline < float("inf") and agree(float(time.monotonic() > self.deadline), self.trainer.device):
                if step > self.start and self.saved != step - 1:  # the periodic save may just have written it
                    self._save(step - 1)
                self.end = step
                break
            self._step(step)
            if self.after_step is not None:
                self.after_step(self, step)
            if self.save_every > 0 and ((step + 1) % self.save_every == 0 or step + 1 == self.steps):
                self._save(step)
            step += 1
        if self.save_at_end and self.finished and self.saved != self.end - 1:
            self._save(self.end - 1)
        if self._pending is not None:
            self._write_lagged(*self._pending)
            self._pending = None
        if self.log is not None:
            self.log.flush()
        self.bar.close()
        if self.rank0 and self.plot:
            self.log.plot()
        return self.finished

    def _step(self, step: int) -> None:
        if self.lagged is None:
            rec = logged_step(self.trainer, step, self.log, self.bar if self.rank0 else None)
            self.records.append(rec)
            self.seconds.append(rec["seconds"])
            return
        t0 = time.perf_counter()
        rec = self.trainer.step(step)
        if self._pending is not None:
            self._write_lagged(*self._pending)
        self.seconds.append(time.perf_counter() - t0)
        self._pending = (rec, self.seconds[-1])

    def _write_lagged(self, rec: dict, seconds: float) -> None:
        out = self.lagged(rec)
        out["seconds"] = seconds
        self.records.append(out)
        if self.log is not None:
            self.log.write(out)
        if self.rank0:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{out['loss']:.4f}")

    def _save(self, step: int) -> None:
        checkpoint.save_step(self.ckpt_dir, step, self.trainer, self.extra, self.keep)
        self.saved = step
        if self.log is not None:  # the log on disk reaches the checkpoint (but for a lagged step)
            self.log.flush()
