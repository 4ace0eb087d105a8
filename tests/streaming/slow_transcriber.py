"""A transcriber factory that takes a minute to build (imported by the spawned worker)."""

import time


class Slow:
    name = "slow"

    def transcribe(self, audio) -> str:
        return ""


def build(seconds: float = 60.0) -> Slow:
    time.sleep(seconds)
    return Slow()
