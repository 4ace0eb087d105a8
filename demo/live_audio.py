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

import numpy as np

# Runs in the page on every new message of the hidden `live_audio` textbox.
# window.omniPlayer also counts what it scheduled, in all and per reply id (read by the
# browser test: with a looping microphone a second reply may start while it checks the first).
PLAYER_JS = """
(msg) => {
  if (!msg) return;
  const m = JSON.parse(msg);
  let p = window.omniPlayer;
  if (!p) {
    p = window.omniPlayer = {ctx: new AudioContext(), next: 0, sources: [], chunks: 0, samples: 0, stops: 0, byReply: {}};
    const wake = () => { if (p.ctx.state === "suspended") p.ctx.resume(); };
    document.addEventListener("click", wake, true);
    document.addEventListener("keydown", wake, true);
  }
  if (p.ctx.state === "suspended") p.ctx.resume();
  if (m.stop) {
    for (const s of p.sources) { try { s.stop(); } catch (e) {} }
    p.sources = []; p.next = 0; p.stops += 1;
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
  const at = Math.max(p.next, p.ctx.currentTime + 0.05);
  src.start(at);
  p.next = at + buf.duration;
  p.sources.push(src);
  src.onended = () => { p.sources = p.sources.filter(s => s !== src); };
  p.chunks += 1; p.samples += pcm.length;
  for (const [rid, n] of (m.parts || [])) p.byReply[rid] = (p.byReply[rid] || 0) + n;
}
"""


class LiveAudio:
    """What of each reply's audio the page has been given; builds the next message."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}  # reply id -> samples handed to the page
        self.stopped: set[str] = set()
        self.cut_ids: set[str] = set()  # replies cut here (the server had sent them whole)
        self.seq = 0

    def cut(self, rid: str) -> None:
        """Stop a reply the page is still playing, though the server has finished it
        (Interrupt, or the user speaking over it): a stop message, no more audio."""
        self.cut_ids.add(rid)

    def next_message(self, client) -> str | None:
        """New audio of every reply since the last call (pcm16, the session's output
        rate), or a stop when a reply was cut off; None when there is nothing new."""
        parts, counts = [], []
        for rid in client.order:
            r = client.replies[rid]
            # a barge-in or a failure stops playback; a reply cut by a length limit
            # ("incomplete") was delivered whole and plays out
            if r.status in ("cancelled", "failed") or rid in self.cut_ids:
                if rid not in self.stopped:
                    self.stopped.add(rid)
                    self.seq += 1
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
        pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2")
        self.seq += 1
        return json.dumps({"seq": self.seq, "rate": int(client.out_rate), "parts": counts,
                           "pcm": base64.b64encode(pcm.tobytes()).decode("ascii")})
