"""The loss log of a training run, and one logged step.

The training loop (`mdp.loop.TrainLoop`) writes it, one log per plain run
(`mdp.train.run`) and per stage of the staged run (`mdp.curriculum.run`). Files in out_dir:
loss.json and loss.csv (rewritten on every write, or every `every` records for
`BufferedTrainLog`) and loss.png (`plot`, at the end of a run).
"""

from __future__ import annotations

import csv
import json
import os
import time

from mdp.loss import STAT_NAMES


def write_json(path: str, obj, indent: int | None = None) -> None:
    """Write JSON aside and rename it over `path`: a run killed mid-write (a kill -9, a call's
    time limit) leaves the previous file whole, which its resume then reads."""
    with open(path + ".tmp", "w") as fh:
        json.dump(obj, fh, indent=indent)
    os.replace(path + ".tmp", path)


class TrainLog:
    """loss.csv / loss.json in out_dir; on resume, entries past the checkpoint are dropped."""

    FIELDS = ("step", "loss", "grad_norm", "lr", "llm_tokens", "seconds")

    def __init__(self, out_dir: str, start: int) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.json_path = os.path.join(out_dir, "loss.json")
        self.csv_path = os.path.join(out_dir, "loss.csv")
        self.png_path = os.path.join(out_dir, "loss.png")
        self.rows: list[dict] = []
        if start > 0 and os.path.isfile(self.json_path):
            with open(self.json_path) as fh:
                self.rows = [r for r in json.load(fh) if r["step"] < start]
        self._flush()

    def write(self, rec: dict) -> None:
        self.rows.append({k: rec[k] for k in self.FIELDS + STAT_NAMES if k in rec})
        self._flush()

    def _flush(self) -> None:
        # each file is written aside and renamed over the old one (write_json): a run killed
        # mid-write leaves the previous log whole, never a truncated one for its resume
        write_json(self.json_path, self.rows, indent=1)
        # the per-term columns exist when the trainer measured them (not with pipeline stages)
        fields = self.FIELDS + tuple(k for k in STAT_NAMES if self.rows and k in self.rows[-1])
        with open(self.csv_path + ".tmp", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore", restval="")
            w.writeheader()
            w.writerows(self.rows)
        os.replace(self.csv_path + ".tmp", self.csv_path)

    def plot(self) -> None:
        if not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in self.rows], [r["loss"] for r in self.rows], marker=".")
        ax.set_xlabel("step")
        ax.set_ylabel("stage-1 loss")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.png_path, dpi=100)
        plt.close(fig)


class BufferedTrainLog(TrainLog):
    """The loss log, written every `every` records (a device-path step takes tens of
    milliseconds; rewriting loss.json / loss.csv after each one would cost as much)."""

    def __init__(self, out_dir: str, start: int, every: int) -> None:
        super().__init__(out_dir, start)
        self.every = max(1, every)

    def write(self, rec: dict) -> None:
        self.rows.append({k: rec[k] for k in self.FIELDS + STAT_NAMES if k in rec})
        if len(self.rows) % self.every == 0:
            self._flush()

    def flush(self) -> None:
        self._flush()


def logged_step(trainer, step: int, log: TrainLog | None, bar) -> dict:
    """One training step, timed; rank 0 passes its log and progress bar."""
    t0 = time.perf_counter()
    rec = trainer.step(step)
    rec["seconds"] = time.perf_counter() - t0
    if log is not None:
        log.write(rec)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{rec['loss']:.4f}")
    return rec
