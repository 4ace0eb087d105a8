"""The resumable, batched evaluation loop.

OUT/samples.jsonl gets one line per finished sample (ok or failed, with the
reason) as soon as its batch is done, so a killed run loses at most one batch
and a rerun skips every id already there (`retry_failed` re-runs failures).
OUT/run.json pins the task and model: resuming into a folder written for
another model or task is refused. A missing or corrupt media file fails that
sample only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from omni.eval import scoring
from omni.eval.manifest import Sample, load_manifest, mcq_prompt
from omni.eval.report import summarize, write_report

ASR_PROMPT = "Transcribe the speech."


class SpeechJudge:
    """pocketsphinx (its bundled English model, open vocabulary) as an independent listener."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=16000, logfn="/dev/null")

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        if sample_rate != 16000:
            import torch
            import torchaudio.functional as AF

            wav = AF.resample(torch.as_tensor(wav, dtype=torch.float32), sample_rate, 16000).numpy()
        pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def build_request(sample: Sample, data_dir: Path, vision_cfg=None):
    """Sample -> OmniRequest (media loaded); raises MediaError / ValueError on bad input."""
    from omni.generation import OmniRequest

    def p(rel):
        return None if rel is None else str(data_dir / rel)

    text = sample.question
    if sample.task == "av-mcq":
        text = mcq_prompt(sample.question, sample.options)
    elif sample.task == "asr":
        text = sample.raw.get("prompt", ASR_PROMPT)
    elif sample.task == "spoken-qa":
        text = sample.raw.get("instruction")  # the question itself is spoken; "prompt" is its transcript
    return OmniRequest.from_files(text, p(sample.image), p(sample.video), p(sample.audio), None, vision_cfg)


def score(sample: Sample, answer: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"answer": answer}
    if sample.task == "asr":
        e, n = scoring.word_errors(sample.answer, answer)
        rec.update(word_errors=e, ref_words=n, expected=sample.answer)
    elif sample.task == "av-mcq":
        choice = scoring.extract_choice(answer, sample.options)
        rec.update(choice=choice, correct=choice == sample.answer, expected=sample.answer)
    elif sample.task == "spoken-qa":
        if sample.rule == "mcq":
            choice = scoring.extract_choice(answer, sample.options)
            ok = choice == sample.answer
            rec["choice"] = choice
        elif sample.rule == "exact":
            ok = any(scoring.exact_match(answer, ref) for ref in [sample.answer, *sample.accept])
        else:
            ok = scoring.is_refusal(answer)
        rec.update(rule=sample.rule, correct=bool(ok), expected=sample.answer if sample.rule != "refusal" else "<refusal>")
    return rec


def _read_cache(path: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            done[str(rec["id"])] = rec
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut by a kill: that sample runs again
    return done


def run_eval(
    task: str,
    data_dir: str | Path,
    model,
    out_dir: str | Path,
    model_name: str = "?",
    batch_size: int = 8,
    max_new_tokens: int = 64,
    limit: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    from tqdm import tqdm

    from omni.generation import GenerationOptions, generate

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    samples = load_manifest(data_dir, task)[:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    pin = {"task": task, "model": model_name, "data": str(data_dir)}
    run_file = out_dir / "run.json"
    if run_file.exists():
        old = json.loads(run_file.read_text())
        if (old.get("task"), old.get("model")) != (task, model_name):
            raise ValueError(f"{out_dir} holds results of task {old.get('task')!r} with model {old.get('model')!r}; use another --out")
    run_file.write_text(json.dumps(pin, indent=2) + "\n")
    cache_path = out_dir / "samples.jsonl"
    done = _read_cache(cache_path)
    if retry_failed:
        done = {k: v for k, v in done.items() if v.get("status") == "ok"}
    todo = [s for s in samples if s.id not in done]
    speech = task == "speech-out"
    opts = GenerationOptions(max_new_tokens=max_new_tokens, speech=True, stop_after_text=not speech, decode_audio=speech)
    judge = SpeechJudge() if speech and todo else None
    audio_dir = out_dir / "audio"
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc=f"eval {task}", disable=not progress)
    with cache_path.open("a") as cache:
        for b in range(0, len(todo), batch_size):
            batch = todo[b : b + batch_size]
            records: list[dict] = []
            ready: list[tuple[Sample, Any]] = []
            for s in batch:
                try:
                    ready.append((s, build_request(s, data_dir, model.config.vision)))
                except (ValueError, OSError) as e:  # MediaError is a ValueError
                    records.append({"id": s.id, "status": "failed", "category": s.category, "error": f"media: {e}"})
            t0 = time.perf_counter()
            try:
                replies = generate(model, [r for _, r in ready], opts) if ready else []
            except Exception:  # isolate the sample that breaks the batch
                replies = []
                for s, r in ready:
                    try:
                        replies.append(generate(model, [r], opts)[0])
                    except Exception as e:  # noqa: BLE001 - reported per sample
                        replies.append(e)
            per = (time.perf_counter() - t0) / max(len(ready), 1)
            for (s, _), reply in zip(ready, replies):
                if isinstance(reply, Exception):
                    records.append({"id": s.id, "status": "failed", "category": s.category, "error": f"model: {reply}"})
                    continue
                rec = {"id": s.id, "status": "ok", "category": s.category, "seconds": per, **score(s, reply.text)}
                if speech:
                    rec.update(_judge_speech(judge, reply, model.output_sample_rate, audio_dir, s.id))
                records.append(rec)
            for rec in records:
                cache.write(json.dumps(rec) + "\n")
                done[rec["id"]] = rec
            cache.flush()
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(b // batch_size)
    bar.close()
    ordered = [done[s.id] for s in samples if s.id in done]
    summary = summarize(task, ordered, {**pin, "batch_size": batch_size, "max_new_tokens": max_new_tokens})
    write_report(out_dir, task, ordered, summary)
    return summary


def _judge_speech(judge: SpeechJudge, reply, sample_rate: int, audio_dir: Path, sid: str) -> dict:
    from speech import save_wav

    wav = reply.audio if reply.audio is not None else np.zeros(0, dtype=np.float32)
    audio_dir.mkdir(exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sid)
    save_wav(audio_dir / f"{safe}.wav", wav, sample_rate)
    heard = judge.transcribe(wav, sample_rate) if len(wav) else ""
    e, n = scoring.word_errors(reply.text, heard)
    return {"heard": heard, "word_errors": e, "ref_words": n, "audio_seconds": len(wav) / sample_rate, "expected": reply.text}
