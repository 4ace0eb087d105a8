"""Does the default model's speech say what its text says? Replies with the text forced.

    python bench/speech_follows_text.py --model omni/pretrained/default --data runs/data/heldout -n 60

Each LLM step emits one text token and one codec frame, text leading: the audio heads can read the
reply's words before they say them. Whether they do is what this measures. For every held-out
spoken question (camera on, as `bench/default_model.py --data` asks it) the model replies three
times, greedy, batch 1:

  free      as it would: its own text and speech;
  own       its text forced to the question's right answer (the speech still the heads' own);
  other     its text forced to another answer of the same family (a different object, number,
            place or phrase): speech that follows the text says that answer, speech that follows
            the question says the right one.

and pocketsphinx, restricted to the grammar of every answer of the world (`omni.synth.recognize`,
as `bench/default_model.py` judges), says which answer each reply's audio is. A model whose audio
heads read the text hears "follows the text" on nearly every `other` reply; one whose heads answer
the question on their own hears the right answer instead. Text is forced by replacing the sampled
text token for as many steps as the forced answer has tokens; after that the model ends its text
itself (it may append the rest of the answer it had begun: "bottom" forced where it wrote "top"
can end as "bottomop"; `heard_other` compares with the forced answer alone). Writes a JSON report
(per condition and family) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

# run as a script: the repository root, not bench/ (bench/encoders.py would shadow the package)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

CONDITIONS = ("free", "own", "other")


def forced_text(ids: list[int] | None):
    """A stand-in for `omni.generation.sample_text` that returns `ids[k]` at the k-th call
    (batch 1), then the model's own choice."""
    import omni.generation as gen

    real = gen.sample_text
    step = {"k": 0}

    def sample(logits, opts, history=None, generator=None):
        out = real(logits, opts, history, generator)
        if ids is not None and step["k"] < len(ids):
            out = torch.full_like(out, ids[step["k"]])
        step["k"] += 1
        return out

    return sample


def reply(model, request, ids: list[int] | None, max_steps: int):
    """One greedy spoken reply with the first text tokens forced to `ids` (None: free)."""
    import omni.generation as gen

    real = gen.sample_text
    gen.sample_text = forced_text(ids)
    try:
        opts = gen.GenerationOptions(max_new_tokens=max_steps, speech=True, decode_audio=True)
        return gen.generate(model, [request], opts)[0]
    finally:
        gen.sample_text = real


def accepted(it: dict) -> set[str]:
    """The item's answer and its accepted forms, normalized as the judge hears them."""
    from omni.synth.questions import normalize_answer

    return {normalize_answer(a) for a in [it["answer"], *it["accept"]]}


def other_answer(items: list[dict], i: int, rng: np.random.Generator) -> str | None:
    """Another item's answer of the same family that is not this item's (normalized)."""
    from omni.synth.questions import normalize_answer

    mine = accepted(items[i])
    pool = sorted({it["answer"] for it in items if it["family"] == items[i]["family"]
                   and normalize_answer(it["answer"]) not in mine})
    return str(rng.choice(pool)) if pool else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="omni/pretrained/default", help="OmniModel checkpoint directory")
    p.add_argument("--data", default="runs/data/heldout", help="held-out split folder (omni data default)")
    p.add_argument("-n", "--questions", type=int, default=60, help="held-out questions (even stride)")
    p.add_argument("--max-steps", type=int, default=80, help="LLM steps per reply")
    p.add_argument("--seed", type=int, default=0, help="the draw of the other answers")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="bench/results/speech_follows_text_cpu.json", help="JSON report")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from tqdm import tqdm

    from bench.default_model import load_items
    from omni.model import OmniModel
    from omni.synth.heldout import request
    from omni.synth.questions import answer_space, normalize_answer
    from omni.synth.recognize import AnswerRecognizer

    t0 = time.time()
    model = OmniModel.from_pretrained(args.model, device="cpu")
    items = load_items(argparse.Namespace(pack=None, data=args.data, limit=args.questions, question="spoken",
                                          tail_s=None))
    items = [it for it in items if it["family"] != "greeting"]  # a greeting has no other answer of its kind
    rec = AnswerRecognizer(answer_space())
    rng = np.random.default_rng(args.seed)
    rows = []
    for i, it in enumerate(tqdm(items, desc="replies", unit="question", file=sys.stderr)):
        other = other_answer(items, i, rng)
        if other is None:
            continue
        req = request(it, "spoken", None)
        row = {"id": it["id"], "family": it["family"], "answer": it["answer"], "other_answer": other}
        right = accepted(it)
        for cond in CONDITIONS:
            forced = {"free": None, "own": it["answer"], "other": other}[cond]
            ids = model.tokenizer.encode(forced) if forced is not None else None
            rep = reply(model, req, ids, args.max_steps)
            silent = rep.audio is None or not len(rep.audio)
            heard = "" if silent else rec.recognize(np.asarray(rep.audio, np.float32), model.output_sample_rate)
            row[cond] = {"text": rep.text, "heard": heard, "heard_text": heard == normalize_answer(rep.text),
                         "heard_right": heard in right, "heard_other": heard == normalize_answer(other)}
        rows.append(row)

    def share(cond: str, key: str, fam: str | None = None) -> dict:
        sel = [r for r in rows if fam is None or r["family"] == fam]
        return {"n": len(sel), "rate": round(sum(r[cond][key] for r in sel) / max(1, len(sel)), 4)}

    fams = sorted({r["family"] for r in rows})
    report = {
        "model": args.model, "data": args.data,
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)",
        "command": "python bench/speech_follows_text.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "judge": "pocketsphinx restricted to every answer of the world (omni.synth.recognize.AnswerRecognizer)",
        "summary": {cond: {key: {"all": share(cond, key), **{f: share(cond, key, f) for f in fams}}
                           for key in ("heard_text", "heard_right", "heard_other")} for cond in CONDITIONS},
        "wall_s": round(time.time() - t0, 1),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    s = report["summary"]
    print(f"speech against text, {len(rows)} held-out spoken questions, {args.model}")
    print(f"{'reply':8} {'family':10} {'n':>4} {'heard = its text':>17} {'heard = right answer':>21} "
          f"{'heard = other':>14}")
    for cond in CONDITIONS:
        for fam in ["all", *fams]:
            n = s[cond]["heard_text"][fam]["n"]
            print(f"{cond:8} {fam:10} {n:4d} {s[cond]['heard_text'][fam]['rate']:17.1%} "
                  f"{s[cond]['heard_right'][fam]['rate']:21.1%} {s[cond]['heard_other'][fam]['rate']:14.1%}")
    print(f"wrote {args.out} ({report['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
