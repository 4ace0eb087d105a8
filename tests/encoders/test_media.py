"""Media decoding with PyAV: files are generated here with av itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from encoders.media import MediaError, read_audio, read_video  # noqa: E402

FPS = 10


def _tone(sr: int, seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write_audio_stream(container, stream, x: np.ndarray, sr: int, layout: str) -> None:
    chans = 2 if layout == "stereo" else 1
    planes = np.ascontiguousarray(np.stack([x] * chans))
    fmt = stream.format.name  # the encoder's preferred sample format
    for s0 in range(0, x.shape[0], 1024):
        piece = planes[:, s0 : s0 + 1024]
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = sr, s0
        if fmt != "fltp":
            frame = av.AudioResampler(format=fmt, layout=layout, rate=sr).resample(frame)[0]
        for p in stream.encode(frame):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def make_video(path: Path, seconds: float = 3.0, audio: bool = True) -> None:
    """Frame i shows a white bar 2 * (i + 1) pixels wide, so a sampled frame tells its own time."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 256, 32, "yuv420p"
        vs.options = {"qscale": "1"}
        if audio:
            aus = c.add_stream("aac", rate=44100)
            aus.layout = "stereo"
        for i in range(int(seconds * FPS)):
            img = np.zeros((32, 256, 3), np.uint8)
            img[:, : 2 * (i + 1)] = 255
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if audio:
            _write_audio_stream(c, aus, _tone(44100, seconds, 440.0), 44100, "stereo")


def make_audio(path: Path, codec: str, sr: int = 22050, seconds: float = 1.5, freq: float = 440.0) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=sr)
        s.layout = "mono"
        _write_audio_stream(c, s, _tone(sr, seconds, freq), sr, "mono")


def _peak_hz(x: np.ndarray, sr: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


def test_video_frames_at_2fps_and_audio_at_16k(tmp_path):
    path = tmp_path / "clip.mp4"
    make_video(path, seconds=10.0)
    clip = read_video(path)
    assert len(clip.frames) == 20 and np.allclose(np.diff(clip.times), 0.5)  # 2 FPS
    assert clip.frames[0].shape == (32, 256, 3) and clip.frames[0].dtype == np.uint8
    # the frame sampled at t is source frame round(t * FPS)
    index = [round((f.mean(axis=(0, 2)) > 128).sum() / 2) - 1 for f in clip.frames]
    assert index == [round(t * FPS) for t in clip.times]
    assert clip.timestamps[:3] == ["second{0.0}", "second{1.0}", "second{2.0}"]
    assert clip.audio is not None and clip.audio.dtype == np.float32 and clip.sample_rate == 16000
    assert abs(len(clip.audio) - 160000) < 16000 * 0.1  # codec priming may add a few ms
    assert abs(_peak_hz(clip.audio[16000:48000]) - 440) < 5


def test_short_video_gets_at_least_16_frames(tmp_path):
    path = tmp_path / "short.mp4"
    make_video(path, seconds=2.0, audio=False)
    clip = read_video(path)
    assert len(clip.frames) == 16 and clip.audio is None
    assert all(np.diff(clip.times) > 0)
    assert read_video(path, fps=1.0, min_frames=2).times.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("ext, codec", [("wav", "pcm_s16le"), ("flac", "flac"), ("mp3", "mp3"), ("m4a", "aac")])
def test_audio_files_resampled_to_16k_mono(tmp_path, ext, codec):
    path = tmp_path / f"tone.{ext}"
    try:
        make_audio(path, codec)
    except (av.error.FFmpegError, ValueError) as e:  # an encoder missing from this FFmpeg build
        pytest.skip(f"cannot write {ext} here: {e}")
    x = read_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 24000) < 16000 * 0.1
    assert abs(_peak_hz(x[2000:22000]) - 440) < 5
    assert 0.2 < np.abs(x[2000:22000]).max() < 0.4


def test_audio_track_of_a_video(tmp_path):
    path = tmp_path / "clip.mp4"
    make_video(path, seconds=2.0)
    x = read_audio(path)
    assert abs(len(x) - 32000) < 1600


@pytest.mark.parametrize(
    "name, content, reader, reason",
    [
        ("missing.wav", None, read_audio, "file not found"),
        ("empty.mp4", b"", read_video, "file is empty"),
        ("junk.mp3", bytes(range(256)) * 40, read_audio, "unsupported or corrupt"),
        ("notes.txt", b"hello, this is text\n" * 50, read_video, "unsupported or corrupt"),
    ],
)
def test_bad_files_raise_naming_file_and_reason(tmp_path, name, content, reader, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=reason) as e:
        reader(path)
    assert name in str(e.value) and e.value.reason


def test_missing_streams_and_truncated_file(tmp_path):
    silent = tmp_path / "silent.mp4"
    make_video(silent, seconds=1.0, audio=False)
    with pytest.raises(MediaError, match="silent.mp4: has no audio stream"):
        read_audio(silent)
    wav = tmp_path / "tone.wav"
    make_audio(wav, "pcm_s16le")
    with pytest.raises(MediaError, match="tone.wav: has no video stream"):
        read_video(wav)
    cut = tmp_path / "cut.mp4"
    make_video(cut, seconds=2.0)
    cut.write_bytes(cut.read_bytes()[:300])  # header without the index/data
    with pytest.raises(MediaError, match="cut.mp4"):
        read_video(cut)
