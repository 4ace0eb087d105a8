"""Video frames on the wire must decode when they arrive.

A frame is only decoded when a packet picks it, possibly seconds later; a
corrupt one must not get that far. `verify_jpeg` decodes each frame at receipt,
cheaply: libjpeg's DCT scaling (`draft`) decodes at 1/8 size, which still
reads every byte of the entropy-coded data, so truncated or garbled frames
fail here, named in an `invalid_image` error, and never reach the model.
Pillow is imported on first use (the protocol package imports numpy only).
"""

from __future__ import annotations

import io

from streaming.protocol.errors import ProtocolError

MAX_SIDE = 4096  # pixels per side; frames are downscaled to 448 px anyway, this bounds decoding cost


def verify_jpeg(data: bytes, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) of a JPEG that decodes, or ProtocolError `invalid_image`."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:
            w, h = img.size
            if not (0 < w <= max_side and 0 < h <= max_side):
                raise ProtocolError("invalid_image", f"image of {w}x{h} pixels; at most {max_side} per side",
                                    param="image")
            img.draft("RGB", (1, 1))  # decode at the smallest DCT scale: cheap, but every byte is read
            img.load()
    except ProtocolError:
        raise
    except Image.UnidentifiedImageError:
        raise ProtocolError("invalid_image", "image is not a JPEG (its header is not recognised)",
                            param="image") from None
    except Exception as e:  # Pillow reports corrupt data as OSError, SyntaxError, ValueError, ...
        raise ProtocolError("invalid_image", f"image does not decode as a JPEG: {e}", param="image") from None
    return w, h
