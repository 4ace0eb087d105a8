"""The engine thread against a scripted model: batching, thread ownership,
rollback leaving the context as if nothing was decoded, barge-in cut at the
last punctuation of what was heard, truncate refining it."""

from __future__ import annotations

import queue
import threading

import numpy as np
from streaming_helpers import ScriptedModel

from omni.realtime_api import UserChunk
from streaming.engine import Engine, EngineEvent
from streaming.engine_commands import Chunk, Close, Interrupt, Respond, Rollback, Truncate


def _sink():
    q: queue.SimpleQueue = queue.SimpleQueue()
    return q, q.put


def _two_sessions(eng: Engine):
    """Open two sessions; returns (events of a, handle a, events of b, handle b)."""
    qa, sa = _sink()
    qb, sb = _sink()
    return qa, eng.open(sa).result(30), qb, eng.open(sb).result(30)


def _drain_until(q, kind, timeout=30.0) -> list[EngineEvent]:
    out = []
    while True:
        e = q.get(timeout=timeout)
        out.append(e)
        if e.kind == kind:
            return out


def _chunk(t0: float, seconds: float) -> UserChunk:
    return UserChunk(np.full(int(16000 * seconds), 0.1, np.float32), [], t0, True)


def test_rollback_restores_context_exactly_and_model_stays_on_engine_thread():
    model = ScriptedModel(max_slots=2)
    eng = Engine(model).start()
    try:
        qa, a, qb, b = _two_sessions(eng)
        for s in (a, b):
            eng.submit(s, Chunk(_chunk(0.0, 1.0)))
            eng.submit(s, Chunk(_chunk(1.0, 0.4)))  # partial packet flushed at the speculative point
        eng.submit(a, Respond(1, True, None))
        _drain_until(qa, "done")  # speculative reply fully decoded, held (not closed)
        eng.submit(a, Rollback(1))
        _drain_until(qa, "rolled_back")
        for s in (a, b):
            eng.submit(s, Chunk(_chunk(1.4, 1.0)))
        eng.barrier().result(30)  # both packets prefilled: each reply can begin as soon as asked
        model.gate = threading.Event()  # a's first step waits until b's reply is queued too
        eng.submit(a, Respond(2, False, None))
        eng.submit(b, Respond(1, False, None))
        model.gate.set()
        _drain_until(qa, "done")
        _drain_until(qb, "done")
        ma, mb = eng.slots[a].slot, eng.slots[b].slot
    finally:
        eng.stop()
    # a speculated, rolled back and answered; b never speculated: same context
    assert model.context(ma) == model.context(mb)
    assert sum(1 for t in model.context(ma) if t[0] == "begin") == 1
    # encoding on the encoder-stage thread, LLM work on the engine thread, codec decoding
    # on the audio-stage thread, never on the caller's
    assert model.threads == {eng._thread.ident, eng.audio.thread.ident, eng.encoder.thread.ident}
    assert model.thread_of["encode"] == {eng.encoder.thread.ident}
    assert model.thread_of["prefill"] == model.thread_of["decode"] == {eng._thread.ident}
    assert threading.get_ident() not in model.threads
    # the two final replies were decoded in the same batched steps
    assert any(c[0] == "decode" and len(c[1]) == 2 for c in model.calls)
    assert eng.metrics.counter("omni_rollbacks_total") == 1


def test_barge_in_cuts_at_last_punctuation_then_truncate_refines():
    model = ScriptedModel(max_slots=1, reply="Sure. The sky is blue, mostly. Bye now!", step_delay=0.05)
    eng = Engine(model).start()
    try:
        q, sink = _sink()
        s = eng.open(sink).result(30)
        ms = eng.slots[s].slot
        eng.submit(s, Chunk(_chunk(0.0, 1.0)))
        eng.submit(s, Respond(1, False, None))
        events = []
        while sum(1 for e in events if e.kind == "delta") < 6:
            events.append(q.get(timeout=30))
        heard = 5 * model.codec_frame_samples + 10  # 5 frames played: "Sure. The sky is blue, "
        eng.submit(s, Interrupt(1, heard, None, "barge_in"))
        ev = _drain_until(q, "interrupted")[-1]
        assert ev.text.strip() == "Sure. The sky is blue,"
        words = [t[1] for t in model.ctx[ms] if t[0] == "tok"]
        assert "".join(words).strip() == "Sure. The sky is blue,"
        # the client then reports it played only 2 frames: cut back to "Sure."
        eng.submit(s, Truncate(1, 2 * model.codec_frame_samples))
        ev = _drain_until(q, "truncated")[-1]
        assert ev.info["applied"] and ev.text.strip() == "Sure."
        # the next user packet closes the reply exactly once
        eng.submit(s, Chunk(_chunk(3.0, 1.0)))
        eng.submit(s, Respond(2, False, None))
        _drain_until(q, "done")
    finally:
        eng.stop()
    ctx = model.context(ms)
    first_end = ctx.index(("end",))
    assert [t[1] for t in ctx[:first_end] if t[0] == "tok"] == ["Sure. "]
    assert ctx[first_end + 1][0] == "audio"  # the interrupting speech follows the cut reply
    assert eng.metrics.counter("omni_interruptions_total") == 1


def test_full_context_starts_over_with_a_clear_event_and_others_continue():
    model = ScriptedModel(max_slots=3)
    model.capacity = 300  # tokens; PACKET_ROOM (256) + 13 tokens per 1 s packet
    eng = Engine(model).start()
    try:
        qa, a, qb, b = _two_sessions(eng)
        for i in range(5):
            eng.submit(a, Chunk(_chunk(float(i), 1.0)))
        eng.submit(b, Chunk(_chunk(0.0, 1.0)))
        eng.barrier().result(30)
        reset = [e for e in _drain_until(qa, "context_reset")]
        eng.submit(a, Respond(1, False, 4))
        eng.submit(b, Respond(1, False, 4))
        _drain_until(qa, "done")
        _drain_until(qb, "done")
        slot_a = eng.slots[a].slot
    finally:
        eng.stop()
    assert "context" in reset[-1].info["reason"]
    assert len(model.context(slot_a)) < 300 and eng.metrics.counter("omni_context_resets_total") >= 1


def test_encoding_overlaps_decoding_and_keeps_each_session_in_order():
    """Stage 2 runs beside stage 3: while one session's reply decodes, the other's
    packets are encoded on the encoder thread. A packet that follows a turn close
    in the same session is encoded only after that close (the streaming encoder's
    state must see the turn end first)."""
    model = ScriptedModel(max_slots=2, reply=" ".join(["word"] * 30), step_delay=0.02, encode_delay=0.05)
    eng = Engine(model).start()
    try:
        qa, a, qb, b = _two_sessions(eng)
        eng.submit(a, Chunk(_chunk(0.0, 1.0)))
        eng.submit(a, Respond(1, False, None))
        eng.submit(a, Chunk(_chunk(1.0, 1.0)))  # after the turn close: encoded after begin
        # b's packets once a's reply is under way (submitted with a's, they could share one
        # encoder batch with a's first packet, and the reply would start after all of them)
        _drain_until(qa, "delta")
        for k in range(6):  # b keeps talking while a answers
            eng.submit(b, Chunk(_chunk(float(k), 1.0)))
        _drain_until(qa, "done")
        eng.barrier().result(30)
        ma, mb = eng.slots[a].slot, eng.slots[b].slot
    finally:
        eng.stop()
    decodes = [(t0, t1) for k, t0, t1 in model.spans if k == "decode"]
    encodes = [(t0, t1) for k, t0, t1 in model.spans if k == "encode"]
    overlapping = [e for e in encodes if any(d0 < e[1] and e[0] < d1 for d0, d1 in decodes)]
    assert len(overlapping) >= 2, (encodes, decodes)
    order = [c for c in model.calls if c[0] in ("encode", "begin") and c[1] == ma]
    assert [c[0] for c in order] == ["encode", "begin", "encode"]
    assert sum(1 for c in model.calls if c[0] == "encode" and c[1] == mb) == 6
    assert sum(1 for t in model.context(mb) if t[0] == "audio") == 75  # 6 s at one token per 80 ms, all prefilled


def test_session_closed_while_its_packet_is_encoded_leaves_no_trace():
    """A packet whose session closes during its encoding is dropped; the slot is
    reused by the next session with only that session's packets in it."""
    model = ScriptedModel(max_slots=1, encode_delay=0.2)
    eng = Engine(model).start()
    try:
        qa, sa = _sink()
        a = eng.open(sa).result(30)
        eng.submit(a, Chunk(_chunk(0.0, 1.0)))
        eng.submit(a, Chunk(_chunk(1.0, 1.0)))
        import time

        time.sleep(0.05)  # the first packet is being encoded
        eng.submit(a, Close())
        qb, sb = _sink()
        b = eng.open(sb).result(30)
        eng.submit(b, Chunk(_chunk(0.0, 0.4)))
        eng.submit(b, Respond(1, False, None))
        _drain_until(qb, "done")
        mb = eng.slots[b].slot
    finally:
        eng.stop()
    ctx = model.context(mb)
    assert sum(1 for t in ctx if t[0] == "audio") == 5  # 0.4 s: b's packet alone
    assert model.thread_of["encode"] == {eng.encoder.thread.ident}


def test_a_packet_the_encoder_rejects_gives_an_error_and_the_sessions_go_on():
    model = ScriptedModel(max_slots=2)
    eng = Engine(model).start()
    try:
        qa, a, qb, b = _two_sessions(eng)
        eng.submit(a, Chunk(_chunk(-1.0, 1.0)))  # batched with b's packet, then isolated
        eng.submit(b, Chunk(_chunk(0.0, 1.0)))
        eng.submit(a, Chunk(_chunk(0.0, 0.4)))
        for s in (a, b):
            eng.submit(s, Respond(1, False, None))
        got_a = _drain_until(qa, "done")
        _drain_until(qb, "done")
        ma, mb = eng.slots[a].slot, eng.slots[b].slot
    finally:
        eng.stop()
    errors = [e for e in got_a if e.kind == "error"]
    assert len(errors) == 1 and "encoding a packet failed" in errors[0].info["message"]
    assert sum(1 for t in model.context(ma) if t[0] == "audio") == 5  # only the good 0.4 s packet
    assert sum(1 for t in model.context(mb) if t[0] == "audio") == 13
    assert eng.metrics.counter("omni_encode_errors_total") == 1


def _three_sessions_with_a_packet(eng: Engine) -> tuple[list, list]:
    """Three sessions, each with a 1 s packet prefilled; returns (sinks, handles)."""
    sinks = [_sink() for _ in range(3)]
    handles = [eng.open(put).result(30) for _, put in sinks]
    for h in handles:
        eng.submit(h, Chunk(_chunk(0.0, 1.0)))
    eng.barrier().result(30)
    return sinks, handles


def _ask_two_while_the_third_decodes(model: ScriptedModel, eng: Engine, handles: list) -> None:
    """The third session's first step holds the engine thread (the model's gate) while the
    first two ask for replies: the engine takes both requests together."""
    model.gate = threading.Event()
    eng.submit(handles[2], Respond(1, False, None))
    while not any(c[0] == "decode" for c in model.calls):
        threading.Event().wait(0.01)
    for h in handles[:2]:
        eng.submit(h, Respond(1, False, None))
    model.gate.set()


def test_replies_of_several_sessions_begin_in_one_call():
    """Replies asked for together begin with one `begin_responses` call; each session's
    context is as if begun alone; a model without the batched call begins them one by one."""
    model = ScriptedModel(max_slots=3)
    eng = Engine(model).start()
    try:
        sinks, handles = _three_sessions_with_a_packet(eng)
        _ask_two_while_the_third_decodes(model, eng, handles)
        for q, _ in sinks:
            _drain_until(q, "done")
        slots = [eng.slots[h].slot for h in handles]
    finally:
        eng.stop()
    assert ("begins", slots[:2]) in model.calls or ("begins", slots[1::-1]) in model.calls
    assert model.context(slots[0]) == model.context(slots[1]) == model.context(slots[2])

    plain = ScriptedModel(max_slots=2)
    plain.begin_responses = None  # a model without the batched call
    eng = Engine(plain).start()
    try:
        (qa, a, qb, b) = _two_sessions(eng)
        for h in (a, b):
            eng.submit(h, Chunk(_chunk(0.0, 1.0)))
            eng.submit(h, Respond(1, False, None))
        _drain_until(qa, "done")
        _drain_until(qb, "done")
    finally:
        eng.stop()
    assert sum(c[0] == "begin" for c in plain.calls) == 2 and not any(c[0] == "begins" for c in plain.calls)


def test_a_failing_batched_reply_start_fails_only_its_session():
    """A batch of reply starts that raises is retried one session at a time: the session
    whose own start fails gets its error and its context back; the others reply."""
    model = ScriptedModel(max_slots=3)
    real_one, real_many = model.begin_response, model.begin_responses
    poisoned: set[int] = set()

    def one(slot, opening=""):
        if slot in poisoned:
            poisoned.discard(slot)
            model.ctx[slot].append(("half-begun",))  # a failing call may leave a mess behind
            raise RuntimeError("injected fault")
        real_one(slot, opening)

    def many(items):
        if poisoned & {slot for slot, _ in items}:
            for slot, _ in items:
                model.ctx[slot].append(("half-begun",))
            raise RuntimeError("injected batch fault")
        real_many(items)

    model.begin_response, model.begin_responses = one, many
    eng = Engine(model).start()
    try:
        sinks, handles = _three_sessions_with_a_packet(eng)
        slots = [eng.slots[h].slot for h in handles]
        before = list(model.context(slots[0]))
        poisoned.add(slots[0])
        _ask_two_while_the_third_decodes(model, eng, handles)
        failed = _drain_until(sinks[0][0], "error")
        _drain_until(sinks[1][0], "done")
        _drain_until(sinks[2][0], "done")
        eng.barrier().result(30)
    finally:
        eng.stop()
    assert "injected fault" in failed[-1].info["message"]
    assert model.context(slots[0]) == before  # back to the turn boundary
    assert model.context(slots[1]) == model.context(slots[2])  # as if the batch had never failed
    assert ("half-begun",) not in model.context(slots[1])


def test_ended_replies_close_in_one_call_with_the_next_packets():
    """The replies of sessions whose next packets are prefilled together close with one
    `end_responses` call; each context is as if closed alone."""
    model = ScriptedModel(max_slots=4)
    eng = Engine(model).start()
    try:
        sinks = [_sink() for _ in range(4)]
        handles = [eng.open(put).result(30) for _, put in sinks]
        for h in handles[:3]:
            eng.submit(h, Chunk(_chunk(0.0, 1.0)))
            eng.submit(h, Respond(1, False, None))
        for q, _ in sinks[:3]:
            _drain_until(q, "done")
        eng.barrier().result(30)
        model.encode_delay = 0.3  # the fourth session's packet keeps the encoder busy while the
        eng.submit(handles[3], Chunk(_chunk(0.0, 1.0)))  # three next packets queue up: encoded, and
        for h in handles[:3]:  # prefilled, together (at least two of them)
            eng.submit(h, Chunk(_chunk(1.0, 1.0)))
        eng.barrier().result(30)
        slots = [eng.slots[h].slot for h in handles[:3]]
    finally:
        eng.stop()
    # the encoder may take one of the three with the fourth's packet: two or three close together
    ends = [c for c in model.calls if c[0] == "ends"]
    assert ends and len(ends[0][1]) >= 2 and set(ends[0][1]) <= set(slots), ends
    assert model.context(slots[0]) == model.context(slots[1]) == model.context(slots[2])
    assert [t[0] for t in model.context(slots[0])].count("end") == 1


def _steps_before_prefill(wait_s: float, respond: bool) -> tuple[int, list, int]:
    """Session a answers (a long reply, 10 ms a step) while session b sends a packet in the
    middle of its turn (then, with `respond`, asks for its reply at once): how many decode
    steps ran between b's packet being encoded and its prefill; the model's calls; b's slot."""
    model = ScriptedModel(max_slots=2, reply=" ".join(["word"] * 150), step_delay=0.01)
    eng = Engine(model, prefill_wait_s=wait_s).start()
    try:
        qa, a, qb, b = _two_sessions(eng)
        eng.submit(a, Chunk(_chunk(0.0, 1.0)))
        eng.submit(a, Respond(1, False, None))
        while not any(c[0] == "decode" for c in model.calls):
            threading.Event().wait(0.005)
        mb = eng.slots[b].slot
        eng.submit(b, Chunk(_chunk(0.0, 1.0)))
        if respond:
            eng.submit(b, Respond(1, False, None))
        eng.barrier().result(30)
        _drain_until(qa, "done")
        if respond:
            _drain_until(qb, "done")
    finally:
        eng.stop()
    calls = list(model.calls)
    encoded = next(i for i, c in enumerate(calls) if c[0] == "encode" and c[1] == mb)
    prefilled = next(i for i, c in enumerate(calls) if c[0] == "prefill" and mb in c[1])
    return sum(c[0] == "decode" for c in calls[encoded:prefilled]), calls, mb


def test_a_packet_mid_turn_waits_while_replies_decode_and_goes_at_once_when_its_reply_waits():
    """While a reply decodes, another session's packet in the middle of its turn waits up to
    `prefill_wait_s` (decode steps run back to back meanwhile); a packet its reply waits
    behind goes at the next step, and that reply begins right after it; without the wait every
    packet goes at the next step."""
    waited, _, _ = _steps_before_prefill(0.5, respond=False)
    assert waited >= 10, waited  # ~0.5 s of 10 ms steps (fewer on a loaded machine, not 10x fewer)
    # (counted from the encoder's start: a step or two may run while the packet is encoded)
    eager, _, _ = _steps_before_prefill(0.0, respond=False)
    assert eager <= 4, eager
    urgent, calls, mb = _steps_before_prefill(0.5, respond=True)
    assert urgent <= 4, urgent
    # b's reply begins right after its packet's prefill, before the next decode step
    llm = [c for c in calls if c[0] in ("prefill", "begin", "begins", "decode")]
    k = next(i for i, c in enumerate(llm) if c[0] == "prefill" and mb in c[1])
    assert llm[k + 1][0] in ("begin", "begins") and mb in (llm[k + 1][1:] if llm[k + 1][0] == "begin"
                                                             else llm[k + 1][1]), llm[k:k + 3]
