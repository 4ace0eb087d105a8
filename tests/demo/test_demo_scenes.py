"""The virtual camera's scene folder (`omni data demo-scenes`, `demo.scenes`) and the
page's turn state and Interrupt for a reply the page is still playing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from demo.app import PLAYBACK_SLACK_S, TabSession
from demo.live_audio import LiveAudio
from demo.scenes import Question, Scene, SceneSet, ask_note, frame_jpeg, question_choices, question_for, read_question
from omni.defaults import DEFAULT_MODEL_DIR
from streaming.client import Reply


def test_shipped_scenes_load_and_suggest_right_answers_first():
    scenes = SceneSet.load(f"{DEFAULT_MODEL_DIR}/demo")
    assert scenes is not None and len(scenes.scenes) >= 5
    for k, s in enumerate(scenes.scenes):
        own = [q for q in s.questions if q.tool is None]
        assert own and own[0].ok  # a scene is kept for a question it answered right
        assert [bool(q.ok) for q in own] == sorted((bool(q.ok) for q in own), reverse=True)
        # then the folder's light requests (the shipped card names the light), with every scene
        assert s.questions[len(own):] == scenes.requests and [q.tool for q in scenes.requests] == ["set_light"] * 2
        choices = question_choices(s)
        assert all(question_for(s, c) is q for c, q in zip(choices, s.questions))
        assert choices[0].endswith("✓") and scenes.by_label(s.label(k)) is s
        x = read_question(s.questions[0])
        assert x.dtype == np.float32 and 0.4 * 16000 < len(x) < 5 * 16000 and np.abs(x).max() > 0.05
        jpeg = frame_jpeg(s.image)
        assert jpeg[:2] == b"\xff\xd8"  # the only format the server takes
    labels = scenes.choices()
    assert scenes.next_label(labels[-1]) == labels[0] and scenes.next_label(None) == labels[0]
    # the page opens on a still and "next scene" shows a video
    assert len(scenes.scenes[0].frames) == 1 and len(scenes.scenes[1].frames) > 1
    assert "✓" in ask_note(scenes.scenes[0]) and "webcam" in ask_note(None)
    assert "switch the light" in ask_note(scenes.scenes[0])
    # a new scene gets the requests too
    fresh = Scene("new001", scenes.scenes[0].image, "", (), fresh=True)
    scenes.add(fresh)
    assert [q.text for q in scenes.scenes[-1].questions] == [q.text for q in scenes.requests]
    assert all(q.ok is None for q in scenes.scenes[-1].questions)  # unchecked with this scene


def test_scene_folders_are_checked(tmp_path):
    assert SceneSet.load(None) is None and SceneSet.load(tmp_path) is None
    (tmp_path / "scenes.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a demo scene list"):
        SceneSet.load(tmp_path)
    (tmp_path / "scenes.json").write_text(json.dumps({"version": 1, "scenes": [
        {"id": "s", "image": "images/s.png", "questions": [{"text": "q", "answer": "a", "audio": "q.wav"}]}]}))
    with pytest.raises(ValueError, match="missing files"):
        SceneSet.load(tmp_path)


def test_write_demo_scenes_without_a_model(tmp_path):
    """Without a model the questions keep split order and say nothing of offline answers."""
    from omni.synth.build import build_split
    from omni.synth.demo_scenes import write_demo_scenes
    from omni.synth.plan import build_plan

    plan = build_plan(0, "heldout", 6, questions_per_scene=3, speech_ratio=0.0, renderings_per_text=1,
                      video_fraction=0.5)
    build_split(tmp_path / "heldout", plan, workers=1, progress=False)
    s = write_demo_scenes(tmp_path / "heldout", tmp_path / "demo", scenes=6, per_scene=2, progress=False)
    assert s["scenes"] == 6 and s["questions"] <= 12
    scenes = SceneSet.load(tmp_path / "demo")
    assert len(scenes.scenes) == 6 and all(q.ok is None for sc in scenes.scenes for q in sc.questions)
    assert all("✓" not in c for sc in scenes.scenes for c in question_choices(sc))
    videos = [sc for sc in scenes.scenes if len(sc.frames) > 1]
    stills = [sc for sc in scenes.scenes if len(sc.frames) == 1]
    assert videos and stills and all("video" in sc.label(0) for sc in videos)
    v = videos[0]  # 2 FPS from the start, the last frame held 1 s, then again
    n = len(v.frames)
    assert v.frame_at(0) == v.frames[0] and v.frame_at(0.5) == v.frames[1] and v.frame_at(n / 2 + 0.6) == v.frames[-1]
    assert v.frame_at(n / 2 + 1.0) == v.frames[0] and stills[0].frame_at(7.3) == stills[0].image
    from PIL import Image

    def moves(sc) -> bool:  # (a video may have nothing moving: "what is moving" -> "nothing")
        with Image.open(sc.frames[0]) as a, Image.open(sc.frames[-1]) as b:
            return bool(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() > 0)

    assert any(moves(sc) for sc in videos)
    # without a model (and so a card naming the light) no light requests; written, they are
    # held-out wordings spoken in held-out voices, with the answer the light makes
    from omni.synth.demo_scenes import light_requests
    from omni.synth.tool_world import REQUESTS

    assert "requests" not in json.loads((tmp_path / "demo" / "scenes.json").read_text())
    written = light_requests(tmp_path / "demo", takes=2)
    assert [r["text"] for r in written] == ["please turn the light on", "please turn the light off"]
    assert all(len(r["takes"]) == 2 and r["audio"] == r["takes"][0] for r in written)
    w = written[0]
    a, b = (read_question(Question(w["text"], w["answer"], tmp_path / "demo" / t, None)) for t in w["takes"])
    assert len(a) != len(b) or not np.array_equal(a, b)  # another voice each
    assert all(r["text"] in REQUESTS[r["arguments"]["on"]]["heldout"] for r in written)
    assert [r["answer"] for r in written] == ["the light is on", "the light is off"]
    for r in written:
        x = read_question(Question(r["text"], r["answer"], tmp_path / "demo" / r["audio"], None))
        assert 0.4 * 16000 < len(x) < 5 * 16000 and np.abs(x).max() > 0.05


def test_scenes_are_judged_under_the_tools_the_page_declares(tmp_path):
    """The page declares the tools a model's card names, so the offline judge asks with the
    system prompt a session declaring them has (the server's own), and without one where the
    card names none."""
    from omni.synth.demo_scenes import card_system_prompt
    from omni.synth.tool_world import LIGHT
    from streaming.calls import system_prompt

    assert card_system_prompt(str(tmp_path)) is None  # no card
    (tmp_path / "card.json").write_text(json.dumps({"about": "shapes", "ask": ["what is moving"]}))
    assert card_system_prompt(str(tmp_path)) is None
    (tmp_path / "card.json").write_text(json.dumps({"about": "shapes", "tools": [LIGHT.to_json()]}))
    declared = card_system_prompt(str(tmp_path))
    assert declared == system_prompt(None, [LIGHT.to_json()], "auto") and "set_light" in declared
    assert card_system_prompt(DEFAULT_MODEL_DIR) == declared  # the shipped card names the light


def _tab(reply: Reply, events: list[dict]) -> TabSession:
    client = SimpleNamespace(events=events, order=[reply.id], replies={reply.id: reply}, errors=[], session={},
                             out_rate=24000, input_transcripts={}, input_time=lambda ms: None)
    return TabSession(client)


def test_turn_state_follows_the_conversation():
    t0 = time.perf_counter()
    r = Reply("resp_1")
    ev = [{"type": "input_audio_buffer.speech_started", "_t": t0}]
    tab = _tab(r, ev)
    assert tab.state(t0) == "listening: you are speaking"
    ev.append({"type": "input_audio_buffer.speech_stopped", "_t": t0 + 1})
    assert tab.state(t0 + 1) == "thinking: end of your turn?"
    ev.append({"type": "response.created", "response": {"id": r.id}, "_t": t0 + 1.2})
    assert tab.state(t0 + 1.2) == "thinking: answering"
    r.t_first_audio, r.audio = t0 + 1.5, [np.zeros(24000, np.float32)]  # 1 s of reply audio
    ev.append({"type": "response.output_audio.delta", "_t": t0 + 1.5})
    r.status, r.t_done = "completed", t0 + 1.6
    ev.append({"type": "response.done", "response": {"id": r.id, "status": "completed"}, "_t": t0 + 1.6})
    assert tab.state(t0 + 2.0) == "speaking"  # the server is done, the page still plays it
    assert tab.state(t0 + 4.0) == "listening"  # played out (with the slack for the page starting late)


def test_interrupt_stops_a_reply_the_page_still_plays():
    now = time.perf_counter()
    r = Reply("resp_2", status="completed", t_first_audio=now - 0.2, t_done=now - 0.1)
    r.audio = [np.full(48000, 0.1, np.float32)]  # 2 s: still playing
    tab = _tab(r, [{"type": "response.done", "response": {"id": r.id, "status": "completed"}, "_t": now - 0.1}])
    assert tab.live.next_message(tab.client) is not None  # the audio went to the page
    assert tab.cut_playing()
    assert json.loads(tab.live.next_message(tab.client))["stop"] is True
    assert tab.live.next_message(tab.client) is None and tab.state() == "interrupted"
    assert not tab.cut_playing()  # nothing left to cut


def test_speaking_over_a_played_out_reply_cuts_it_here():
    now = time.perf_counter()
    r = Reply("resp_3", status="completed", t_first_audio=now - 0.3, t_done=now - 0.2)
    r.audio = [np.full(48000, 0.1, np.float32)]
    ev = [{"type": "response.done", "response": {"id": r.id, "status": "completed"}, "_t": now - 0.2}]
    tab = _tab(r, ev)
    tab.barge_in()
    assert r.id not in tab.live.cut_ids  # nobody spoke
    ev.append({"type": "input_audio_buffer.speech_started", "_t": now})
    # a busy page polls late: many events (transcript deltas...) after it are no reason to miss it
    ev += [{"type": "conversation.item.input_audio_transcription.delta", "_t": now} for _ in range(20)]
    tab.barge_in()
    assert r.id in tab.live.cut_ids and isinstance(tab.live, LiveAudio)


def _reply_the_page_played(t0: float) -> tuple[TabSession, list[dict]]:
    """A 0.5 s reply that arrived whole at t0 and went to the page 0.2 s later; the
    client's input audio is live 1 ms per ms from t0 - 10 s."""
    r = Reply("resp_4", status="completed", t_first_audio=t0, t_done=t0 + 0.01)
    r.audio = [np.full(12000, 0.1, np.float32)]
    ev = [{"type": "response.done", "response": {"id": r.id, "status": "completed"}, "_t": t0 + 0.01}]
    tab = _tab(r, ev)
    tab.client.input_time = lambda ms: t0 - 10 + ms / 1000
    assert tab.live.next_message(tab.client, now=t0 + 0.2) is not None
    return tab, ev


def _speech(t0: float, began: float, arrived: float) -> dict:
    return {"type": "input_audio_buffer.speech_started", "audio_start_ms": round(1000 * (began - t0 + 10)),
            "_t": arrived}


def test_speaking_over_a_reply_is_judged_when_the_speech_began_not_when_a_poll_looks():
    t0 = time.perf_counter() - 30  # the poll comes long after all of it
    tab, ev = _reply_the_page_played(t0)
    played = tab.live.playback["resp_4"]  # the page plays it from when it was handed over
    assert played == pytest.approx([t0 + 0.25, t0 + 0.75])
    # the speech began while the page may still have played it: after its arrival + length + slack,
    # but the page started it late; the news of it came after that window too
    began = played[1] + PLAYBACK_SLACK_S - 0.1
    assert began > t0 + 0.5 + PLAYBACK_SLACK_S
    ev.append(_speech(t0, began=began, arrived=began + 0.8))
    tab.barge_in()
    assert "resp_4" in tab.live.cut_ids and json.loads(tab.live.next_message(tab.client))["stop"]


def test_speech_after_a_reply_played_out_or_before_it_came_leaves_it_alone():
    t0 = time.perf_counter() - 30
    tab, ev = _reply_the_page_played(t0)
    # the question the reply answers (its news came before the reply)
    ev.append(_speech(t0, began=t0 - 2, arrived=t0 - 1.5))
    # speech that began after the page played it out, however soon a poll looks
    end = tab.live.playback["resp_4"][1] + PLAYBACK_SLACK_S
    ev.append(_speech(t0, began=end + 0.1, arrived=end + 0.2))
    tab.barge_in()
    assert not tab.live.cut_ids and tab.live.next_message(tab.client) is None


def test_when_speech_began_the_clients_send_time_else_the_events_arrival():
    t0 = time.perf_counter()
    tab, _ = _reply_the_page_played(t0)
    assert tab.speech_began(_speech(t0, began=t0 + 1, arrived=t0 + 1.4)) == pytest.approx(t0 + 1)
    assert tab.speech_began({"type": "input_audio_buffer.speech_started", "_t": t0 + 2}) == t0 + 2
    tab.client.input_time = lambda ms: None  # sent too long ago to be known
    assert tab.speech_began(_speech(t0, began=t0 + 1, arrived=t0 + 1.4)) == t0 + 1.4
    tab.client.input_time = lambda ms: t0 + 9  # never after its news came
    assert tab.speech_began(_speech(t0, began=t0 + 1, arrived=t0 + 1.4)) == t0 + 1.4


def test_the_first_still_opens_the_page_and_a_video_follows():
    from demo.check_scenes import video_second

    s = [{"id": "a", "video": "v"}, {"id": "b"}, {"id": "c", "video": "v"}, {"id": "d"}]
    assert [x["id"] for x in video_second(s)] == ["b", "a", "c", "d"]
    assert [x["id"] for x in video_second(s[1::2])] == ["b", "d"]  # no video: unchanged
    assert [x["id"] for x in video_second([s[0], s[2]])] == ["a", "c"]  # no still: unchanged


def test_check_scenes_keeps_what_works_the_pages_way(tmp_path, monkeypatch):
    """`python -m demo.check_scenes` with the server's answers scripted: questions right
    the page's way first, scenes without one dropped, their files deleted; a light request is
    right only with exactly the asked call and the answer its output calls for."""
    import shutil

    from demo import check_scenes

    src = SceneSet.load(f"{DEFAULT_MODEL_DIR}/demo")
    root = tmp_path / "demo"
    shutil.copytree(src.root, root)
    doc = json.loads((root / "scenes.json").read_text())
    for s in doc["scenes"]:
        for q in s["questions"]:
            q["offline_ok"] = True
            q.pop("stream_ok", None)
    first = doc["scenes"][0]
    right = {first["questions"][-1]["audio"]}  # only the last question of the first scene comes back right

    requests = doc["requests"]  # the shipped card names the light: the folder asks for it
    assert [r["arguments"] for r in requests] == [{"on": True}, {"on": False}]
    # "on" in three takes (other voices), only the second done right; "off", one take, heard as "on"
    on, off = requests
    takes = [f"questions/light-on-t{i}.wav" for i in range(3)]
    for t in takes:
        shutil.copyfile(root / on["audio"], root / t)
    on["takes"], on["audio"] = takes, takes[0]
    off.pop("takes", None)

    async def scripted(url, scene, audio, timeout=60.0):
        rel = str(audio.relative_to(root))
        if rel == takes[1] or rel == off["audio"]:
            return "The light is on.", [("set_light", '{"on":true}')]
        if rel.startswith("questions/light-"):
            return "The light is off.", [("set_light", '{"on":false}')]
        q = next(q for s in doc["scenes"] for q in s["questions"] if q["audio"] == rel)
        return (q["answer"].upper() + "." if rel in right else "nothing"), []

    monkeypatch.setattr(check_scenes, "ask_like_the_page", scripted)
    summary = check_scenes.check(doc, root, "ws://unused", keep=10, per_scene=2, progress=False)
    assert summary["scenes"] == 1 and summary["suggestions_right"] == 1
    assert doc["stream_check"]["turn_detection"] == "server default"  # what check() was told the page asks
    assert summary["requests"] == 2 and summary["requests_right"] == 1 and summary["request_takes_asked"] == 3
    assert [r["stream_ok"] for r in doc["requests"]] == [True, False]
    # the page suggests the take done right, and only it is kept; a request none of whose
    # takes is right keeps its first, marked wrong
    assert on["audio"] == takes[1] and on["takes"] == [takes[1]] and on["takes_asked"] == 2
    assert off["takes_asked"] == 1 and off["stream_reply"] == "The light is on."
    assert not check_scenes.judge_request(requests[0], "the light is on", [("set_light", '{"on":true}')] * 2)
    kept = doc["scenes"][0]["questions"]
    assert len(kept) == 2 and kept[0]["stream_ok"] and kept[0]["audio"] in right and not kept[1]["stream_ok"]
    assert check_scenes.prune_files(doc, root) > 0
    assert all((root / r["audio"]).is_file() for r in requests)  # the requests' recordings stay
    assert not (root / takes[0]).exists() and not (root / takes[2]).exists()  # the other takes go
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(
        Path(f).name for f in first.get("frames") or [first["image"]])
    assert check_scenes.normalize(" Top! ") == "top"


def test_a_new_scene_is_a_held_out_scene_with_answerable_spoken_questions(tmp_path):
    from demo.new_scene import SceneMaker, make_scene
    from omni.synth.questions import answer_space, normalize_answer
    from omni.synth.world import sample_scene, split_of_signature

    scene = make_scene(tmp_path / "a", "new001", seed=11)
    again = make_scene(tmp_path / "b", "new001", seed=11)
    assert [q.text for q in scene.questions] == [q.text for q in again.questions]  # repeatable by seed
    world = sample_scene(11, "heldout", 0)
    assert split_of_signature(world.signature()) == "heldout"  # never in the model's training
    assert scene.fresh and (len(scene.frames) == 1) == (world.kind == "image")
    assert all(p.is_file() for p in (scene.image, *scene.frames))
    assert 1 <= len(scene.questions) <= 4
    answers = {normalize_answer(a) for a in answer_space()}
    for q in scene.questions:
        assert q.ok is None and normalize_answer(q.answer) in answers
        x = read_question(q)
        assert 0.3 < len(x) / 16000 < 6 and np.abs(x).max() > 0.05  # a spoken question, 16 kHz
    # added to a page's scenes: labelled new, nothing marked as checked, the page says so
    shipped = SceneSet.load(Path(DEFAULT_MODEL_DIR) / "demo")
    n = len(shipped.scenes)
    label = shipped.add(SceneMaker(tmp_path / "c", seed=1)())
    assert label.startswith(f"new scene {n + 1}:") and shipped.choices()[-1] == label
    assert shipped.next_label(label) == shipped.choices()[0]
    made = shipped.by_label(label)
    assert all("✓" not in c for c in question_choices(made))
    assert "never seen in its training" in ask_note(made)
