"""Reply audio played in the browser while it arrives (no ffmpeg).

Gradio's own streaming audio output encodes chunks with the `ffmpeg` executable;
this path needs none. Each poll of the page hands the audio that has arrived
since the last poll to a small Web Audio player in the page as base64 pcm16,
which schedules the chunks back to back (gapless) on one AudioContext. When a
reply is cut off (barge-in or the Interrupt button), the player drops what it
has scheduled at once.
"""

from __future__ import annotations

import base64
import json
import time

import numpy as np

LEAD_S = 0.05  # the player starts a chunk this long after it gets it, unless it queues behind another

# Runs in the page on every new message of the hidden `live_audio` textbox.
# window.omniPlayer also counts what it scheduled, in all and per reply id, and keeps the
# ids of the replies it stopped (read by the browser tests: with a looping microphone a
# second reply may start while it checks the first; a stop is checked for the reply it cut).
PLAYER_JS = """
(msg) => {
  if (!msg) return;
  const m = JSON.parse(msg);
  let p = window.omniPlayer;
  if (!p) {
    p = window.omniPlayer = {ctx: new AudioContext(), next: 0, sources: [], chunks: 0, samples: 0, stops: 0,
                             byReply: {}, stopped: []};
    const wake = () => { if (p.ctx.state === "suspended") p.ctx.resume(); };
    document.addEventListener("click", wake, true);
    document.addEventListener("keydown", wake, true);
  }
  if (p.ctx.state === "suspended") p.ctx.resume();
  if (m.stop) {
    for (const s of p.sources) { try { s.stop(); } catch (e) {} }
    p.sources = []; p.next = 0; p.stops += 1; p.stopped.push(m.rid);
    return;
  }
  const bytes = Uint8Array.from(atob(m.pcm), c => c.charCodeAt(0));
  const pcm = new Int16Array(bytes.buffer);
  if (!pcm.length) return;
  const buf = p.ctx.createBuffer(1, pcm.length, m.rate);
  const ch = buf.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = p.ctx.createBufferSource();
  src.buffer = buf;
  src.connect(p.ctx.destination);
  const at = Math.max(p.next, p.ctx.currentTime + LEAD_S);
  src.start(at);
  p.next = at + buf.duration;
  p.sources.push(src);
  src.onended = () => { p.sources = p.sources.filter(s => s !== src); };
  p.chunks += 1; p.samples += pcm.length;
  for (const [rid, n] of (m.parts || [])) p.byReply[rid] = (p.byReply[rid] || 0) + n;
}
""".replace("LEAD_S", repr(LEAD_S))  # one lead for the page's player and LiveAudio.schedule


class LiveAudio:
    """What of each reply's audio the page has been given; builds the next message.

    It also follows when the page plays each reply (`playback`: start and end on this
    process's clock), scheduling as the page's player does from when each message leaves
    here. A reply plays from when it is handed over, up to a poll after its audio came;
    the page gets the message later still (a busy browser), never sooner, so the end is
    the earliest the page can be done with the reply."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}  # reply id -> samples handed to the page
        self.stopped: set[str] = set()
        self.cut_ids: set[str] = set()  # replies cut here (the server had sent them whole)
        self.seq = 0
        self.playback: dict[str, list[float]] = {}  # reply id -> [start, end] of its playback on the page
        self.page_next = 0.0  # when the audio the page has scheduled runs out (its player's `next`)

    def cut(self, rid: str) -> None:
        """Stop a reply the page is still playing, though the server has finished it
        (Interrupt, or the user speaking over it): a stop message, no more audio."""
        self.cut_ids.add(rid)

    def next_message(self, client, now: float | None = None) -> str | None:
        """New audio of every reply since the last call (pcm16, the session's output
        rate), or a stop when a reply was cut off; None when there is nothing new.
        `now`: when the message goes to the page (perf_counter; default: now)."""
        now = time.perf_counter() if now is None else now
        parts, counts = [], []
        for rid in client.order:
            r = client.replies[rid]
            # a barge-in or a failure stops playback; a reply cut by a length limit
            # ("incomplete") was delivered whole and plays out
            if r.status in ("cancelled", "failed") or rid in self.cut_ids:
                if rid not in self.stopped:
                    self.stopped.add(rid)
                    self.seq += 1
                    self.page_next = 0.0  # the player drops all it has scheduled
                    return json.dumps({"seq": self.seq, "rid": rid, "stop": True})
                continue
            wav = r.waveform()
            done = self.sent.get(rid, 0)
            if len(wav) > done:
                parts.append(wav[done:])
                counts.append([rid, len(wav) - done])
                self.sent[rid] = len(wav)
        if not parts:
            return None
        self.schedule(counts, client.out_rate, now)
        pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2")
        self.seq += 1
        return json.dumps({"seq": self.seq, "rate": int(client.out_rate), "parts": counts,
                           "pcm": base64.b64encode(pcm.tobytes()).decode("ascii")})

    def schedule(self, counts: list[list], rate: int, now: float) -> None:
        """Follow the page's player (PLAYER_JS) scheduling one message: its replies' parts
        play back to back, after what is already scheduled or LEAD_S from now."""
        at = max(self.page_next, now + LEAD_S)
        for rid, n in counts:
            span = self.playback.setdefault(rid, [at, at])
            at += n / rate
            span[1] = at
        self.page_next = at
