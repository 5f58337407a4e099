"""Labelled image grids for ``fastidx show`` and ``fastidx demo``, drawn with Pillow.

Pillow is optional (``pip install "fastidx[image]"``); without it the commands say so in one line.
Each image is enlarged ``SCALE`` times with nearest-neighbour sampling (its pixels stay exact), its
class name written below it, the grid's title above.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ._common import CLIError

SCALE = 3
PAD = 6  # pixels around each image and its label
FONT_SIZE = 14

#: KMNIST's classes are hiragana, which Pillow's built-in font cannot draw: they are labelled in romaji.
ROMAJI = dict(
    zip(
        "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわゐゑをん",
        "a i u e o ka ki ku ke ko sa shi su se so ta chi tsu te to na ni nu ne no ha hi fu he ho "
        "ma mi mu me mo ya yu yo ra ri ru re ro wa wi we wo n".split(),
    )
)


class GridUnavailable(CLIError):
    """Pillow is not installed."""


def label_text(name: str, index: int) -> str:
    """``name`` if it is printable ASCII (what the built-in font draws), else its romaji, else ``index``.

    >>> label_text("Ankle boot", 9), label_text("き", 1), label_text("Ω", 3)
    ('Ankle boot', 'ki', '3')
    """
    if name.isascii() and name.isprintable():
        return name
    if name and all(char in ROMAJI for char in name):
        return "".join(ROMAJI[char] for char in name)
    return str(index)


def _pillow():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise GridUnavailable(
            "pictures are drawn with Pillow, which is not installed: pip install \"fastidx[image]\" "
            "(or pip install pillow)"
        ) from None
    return Image, ImageDraw, ImageFont


def _font(ImageFont):
    try:
        return ImageFont.load_default(size=FONT_SIZE)  # Pillow >= 10.1 with FreeType: scalable
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()  # its small bitmap font


def image_grid(images, labels: list[str], title: str):
    """A grayscale ``PIL.Image``: ``images`` (uint8, N x H x W) in ceil(sqrt(N)) columns, labelled."""
    import numpy as np

    Image, ImageDraw, ImageFont = _pillow()
    font = _font(ImageFont)
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))

    def width(text: str) -> int:
        return math.ceil(measure.textlength(text, font=font))

    ascent, descent = font.getmetrics()
    line = ascent + descent
    n, h, w = images.shape[0], images.shape[1] * SCALE, images.shape[2] * SCALE
    columns = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    cell_w = max([w, *map(width, labels)]) + 2 * PAD
    cell_h = h + line + 2 * PAD
    top = line + 2 * PAD
    canvas = Image.new("L", (max(columns * cell_w, width(title) + 2 * PAD), top + rows * cell_h), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, PAD), title, fill=255, font=font)
    for i, (image, label) in enumerate(zip(images, labels)):
        row, column = divmod(i, columns)
        x0, y0 = column * cell_w, top + row * cell_h
        tile = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).resize((w, h), Image.NEAREST)
        canvas.paste(tile, (x0 + (cell_w - w) // 2, y0 + PAD))
        draw.text((x0 + (cell_w - width(label)) // 2, y0 + PAD + h + PAD // 2), label, fill=255, font=font)
    return canvas


def write_png(path: Path, image) -> None:
    """Save ``image`` as PNG at ``path``; the file appears whole or not at all."""
    from .._atomic import atomic_write

    # The temporary file is private (0600); the picture gets the mode any new file would get.
    umask = os.umask(0)
    os.umask(umask)
    try:
        with atomic_write(path) as out:
            os.fchmod(out.fileno(), 0o666 & ~umask)
            image.save(out, format="PNG")
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}; choose another --out") from None
