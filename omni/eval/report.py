"""Summary JSON, Markdown report and PNG plots of one evaluation run."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any


def summarize(task: str, records: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Task metrics over finished samples; failed samples are counted, not scored."""
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] == "failed"]
    out: dict[str, Any] = {
        "task": task,
        "num_samples": len(records),
        "num_scored": len(ok),
        "num_failed": len(failed),
        "failure_reasons": dict(Counter(r.get("error", "?").split(":")[0] for r in failed)),
        **meta,
    }
    if task == "asr" or task == "speech-out":
        errs = sum(r["word_errors"] for r in ok)
        words = sum(r["ref_words"] for r in ok)
        out["wer"] = errs / words if words else None
        out["word_errors"], out["ref_words"] = errs, words
    if task in ("av-mcq", "spoken-qa"):
        out["accuracy"] = sum(r["correct"] for r in ok) / len(ok) if ok else None
        per: dict[str, list[int]] = defaultdict(list)
        for r in ok:
            per[r.get("category", "all")].append(int(r["correct"]))
        out["per_category"] = {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(per.items())}
    if task == "av-mcq":
        out["unanswered"] = sum(1 for r in ok if r.get("choice") is None)
    if task == "spoken-qa":
        per_rule: dict[str, list[int]] = defaultdict(list)
        for r in ok:
            per_rule[r["rule"]].append(int(r["correct"]))
        out["per_rule"] = {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(per_rule.items())}
    if task == "speech-out":
        out["audio_seconds"] = sum(r.get("audio_seconds", 0.0) for r in ok)
        out["no_speech"] = sum(1 for r in ok if r.get("audio_seconds", 0.0) == 0.0)
    lat = [r["seconds"] for r in ok if "seconds" in r]
    if lat:
        out["mean_seconds_per_sample"] = sum(lat) / len(lat)
    return out


def _plot(task: str, records: list[dict], summary: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # plotting is optional: the JSON and Markdown still exist
        return False
    ok = [r for r in records if r["status"] == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if task in ("av-mcq", "spoken-qa"):
        per = summary.get("per_category", {})
        axes[0].bar(list(per), [v["accuracy"] for v in per.values()], color="tab:blue")
        axes[0].set_ylim(0, 1)
        axes[0].set_title("accuracy per category")
        axes[0].tick_params(axis="x", rotation=30)
    else:
        vals = [r["word_errors"] / max(r["ref_words"], 1) for r in ok]
        axes[0].hist(vals, bins=20, color="tab:blue")
        axes[0].set_title("per-sample WER")
    counts = Counter(r["status"] for r in records)
    axes[1].bar(list(counts), list(counts.values()), color=["tab:green" if k == "ok" else "tab:red" for k in counts])
    axes[1].set_title("samples by status")
    fig.suptitle(f"omni eval: {task}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(out_dir: Path, task: str, records: list[dict], summary: dict) -> None:
    out_dir = Path(out_dir)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    has_plot = _plot(task, records, summary, out_dir / "report.png")
    lines = [f"# Evaluation: {task}", ""]
    lines += [f"- model: `{summary.get('model', '?')}`", f"- data: `{summary.get('data', '?')}`"]
    lines += [f"- samples: {summary['num_samples']} ({summary['num_scored']} scored, {summary['num_failed']} failed)"]
    for key in ("wer", "accuracy"):
        if summary.get(key) is not None:
            lines.append(f"- **{key}: {summary[key]:.4f}**")
    if summary.get("unanswered") is not None:
        lines.append(f"- answers with no recognizable option: {summary['unanswered']}")
    for table in ("per_category", "per_rule"):
        if summary.get(table):
            lines += ["", f"| {table.split('_')[1]} | n | accuracy |", "|---|---|---|"]
            lines += [f"| {k} | {v['n']} | {v['accuracy']:.3f} |" for k, v in summary[table].items()]
    if summary["num_failed"]:
        lines += ["", "## Failed samples", "", "| id | reason |", "|---|---|"]
        lines += [f"| {r['id']} | {r.get('error', '?')} |" for r in records if r["status"] == "failed"][:50]
    ok = [r for r in records if r["status"] == "ok"][:10]
    if ok:
        lines += ["", "## First answers", "", "| id | answer | expected |", "|---|---|---|"]
        for r in ok:
            ans = str(r.get("answer", "")).replace("|", "/").replace("\n", " ")[:80]
            lines.append(f"| {r['id']} | {ans} | {str(r.get('expected', '')).replace('|', '/')[:60]} |")
    if has_plot:
        lines += ["", "![results](report.png)"]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
