"""Media input with PyAV: video frames sampled at a target rate, and audio
resampled to 16 kHz mono float32, from video files and audio files alike
(mp4/mkv/webm/avi..., wav/mp3/flac/ogg/m4a...).

Any file that is missing, empty, corrupt, unsupported or lacks the wanted
stream raises `MediaError`, whose message starts with the file name and says why.

    clip = read_video("talk.mp4")            # 2 FPS, >= 16 frames, <= 256
    clip.frames[i]  # HxWx3 uint8;  clip.times[i] seconds;  clip.timestamps  # 'second{t}' per pair
    clip.audio      # float32 [samples] at 16 kHz mono, or None without an audio track
    pcm = read_audio("question.flac")        # float32 [samples], 16 kHz mono
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.image_processing import pair_timestamps, video_sample_times
from omni.config import VisionConfig


class MediaError(ValueError):
    """A media file could not be used; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass
class VideoClip:
    frames: list[np.ndarray]  # sampled frames, HxWx3 uint8 RGB
    times: np.ndarray  # sample time of each frame, seconds
    duration: float  # seconds
    audio: np.ndarray | None  # float32 mono at `sample_rate`, None if the file has no audio
    sample_rate: int

    @property
    def timestamps(self) -> list[str]:
        """'second{t}' text timestamp of each frame pair."""
        return pair_timestamps(self.times)


def _open(path: str | Path):
    import av

    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if p.is_dir():
        raise MediaError(p, "is a directory, not a media file")
    if p.stat().st_size == 0:
        raise MediaError(p, "file is empty")
    try:
        container = av.open(str(p))
    except av.error.FFmpegError as e:
        raise MediaError(p, f"unsupported or corrupt media file ({e.strerror or e})") from None
    if container.format.name in _NOT_MEDIA:
        # FFmpeg renders any text file as ANSI art through its 'tty' demuxer
        container.close()
        raise MediaError(p, f"unsupported or corrupt media file (looks like {_NOT_MEDIA[container.format.name]})")
    return container


_NOT_MEDIA = {"tty": "a text file"}


def _decode_audio(container, path, sample_rate: int) -> np.ndarray:
    import av

    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as e:
        raise MediaError(path, f"corrupt audio data ({e.strerror or e})") from None
    if not chunks:
        raise MediaError(path, "audio stream has no decodable samples")
    return np.concatenate(chunks).astype(np.float32, copy=False)


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Whole audio track of an audio or video file -> float32 [samples] mono."""
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "has no audio stream")
        return _decode_audio(container, path, sample_rate)


def _duration(container, stream, path) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _frame_times(container, stream, path) -> list[float]:
    import av

    times = []
    try:
        for frame in container.decode(stream):
            times.append(float(frame.time or 0.0))
    except av.error.FFmpegError as e:
        raise MediaError(path, f"corrupt video data ({e.strerror or e})") from None
    return times


def read_video(
    path: str | Path,
    fps: float | None = None,
    min_frames: int | None = None,
    max_frames: int | None = None,
    with_audio: bool = True,
    sample_rate: int = 16000,
    cfg: VisionConfig | None = None,
) -> VideoClip:
    """Sample frames at `fps` (default cfg.video_fps = 2; >= min_frames for short
    clips, <= max_frames spread uniformly for long ones) and decode the audio track.
    Each sample time takes the decoded frame nearest to it."""
    import av

    cfg = cfg or VisionConfig()
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "has no video stream")
        stream = container.streams.video[0]
        duration = _duration(container, stream, path)
        if not duration or duration <= 0:
            # no usable header duration: find it from the frames themselves
            ft = _frame_times(container, stream, path)
            if not ft:
                raise MediaError(path, "no decodable video frames")
            step = (ft[-1] - ft[0]) / max(1, len(ft) - 1) if len(ft) > 1 else 1 / 25
            duration = ft[-1] + step
            container.seek(0)
        targets = video_sample_times(duration, cfg, fps, min_frames, max_frames)
        chosen: list = [None] * len(targets)
        k, prev, prev_t = 0, None, 0.0
        try:
            for frame in container.decode(stream):
                t = float(frame.time or 0.0)
                while k < len(targets) and t >= targets[k]:
                    near_prev = prev is not None and targets[k] - prev_t < t - targets[k]
                    chosen[k] = prev if near_prev else frame
                    k += 1
                if k == len(targets):
                    break
                prev, prev_t = frame, t
        except av.error.FFmpegError as e:
            raise MediaError(path, f"corrupt video data ({e.strerror or e})") from None
        if prev is None and chosen[0] is None:
            raise MediaError(path, "no decodable video frames")
        for i in range(k, len(targets)):  # sample times past the last frame
            chosen[i] = prev
        frames = [f.to_ndarray(format="rgb24") for f in chosen]
        audio = None
        if with_audio and container.streams.audio:
            container.seek(0)
            audio = _decode_audio(container, path, sample_rate)
    return VideoClip(frames, np.asarray(targets), float(duration), audio, sample_rate)
