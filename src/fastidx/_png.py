"""Grids of labelled sample images, written as PNG with nothing but NumPy and zlib.

The images are 28x28 pixel art, so a crisp bitmap font suits their labels better than anti-aliased
text, and needs no font files: :data:`GLYPHS` is a 5x9 font (cap height 7, two rows of descender)
for printable ASCII. Labels the font cannot spell (KMNIST's hiragana) are written in romaji, and
failing that as the class index, so a grid is legible on every machine.

>>> import numpy as np
>>> grid = image_grid(np.zeros((4, 28, 28), np.uint8), ["0", "1", "2", "3"], title="demo")
>>> grid.dtype, grid.ndim
(dtype('uint8'), 2)
>>> png_bytes(grid)[:8]
b'\\x89PNG\\r\\n\\x1a\\n'
"""

from __future__ import annotations

import math
import os
import struct
import zlib

import numpy as np

from ._atomic import atomic_write

__all__ = ["GLYPHS", "image_grid", "label_text", "png_bytes", "png_size", "text_bitmap", "write_png"]

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 9  # rows 0-6 above the baseline, 7-8 for descenders
ADVANCE = GLYPH_WIDTH + 1

# Each glyph is its rows from the top, "#" for ink; rows left out are blank.
_FONT = {
    " ": "",
    "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
    '"': ".#.#. .#.#.",
    "#": ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
    "$": "..#.. .#### #.#.. .###. ..#.# ####. ..#..",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    "&": ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#",
    "'": "..#.. ..#..",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "*": "..... ..#.. #.#.# .###. #.#.# ..#..",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#..",
    ",": "..... ..... ..... ..... ..... .##.. ..#.. .#...",
    "-": "..... ..... ..... #####",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    "/": "..... ....# ...#. ..#.. .#... #....",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    ":": "..... .##.. .##.. ..... .##.. .##..",
    ";": "..... .##.. .##.. ..... .##.. .##.. ..#.. .#...",
    "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    "=": "..... ..... ##### ..... #####",
    ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
    "@": ".###. #...# #.### #.#.# #.### #.... .####",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "[": ".###. .#... .#... .#... .#... .#... .###.",
    "\\": "..... #.... .#... ..#.. ...#. ....#",
    "]": ".###. ...#. ...#. ...#. ...#. ...#. .###.",
    "^": "..#.. .#.#. #...#",
    "_": "..... ..... ..... ..... ..... ..... ..... #####",
    "`": ".#... ..#..",
    "a": "..... ..... .###. ....# .#### #...# .####",
    "b": "#.... #.... ####. #...# #...# #...# ####.",
    "c": "..... ..... .###. #.... #.... #...# .###.",
    "d": "....# ....# .#### #...# #...# #...# .####",
    "e": "..... ..... .###. #...# ##### #.... .###.",
    "f": "..##. .#..# .#... ###.. .#... .#... .#...",
    "g": "..... ..... .#### #...# #...# #...# .#### ....# .###.",
    "h": "#.... #.... #.##. ##..# #...# #...# #...#",
    "i": "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
    "j": "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..",
    "k": "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
    "l": ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "m": "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#",
    "n": "..... ..... #.##. ##..# #...# #...# #...#",
    "o": "..... ..... .###. #...# #...# #...# .###.",
    "p": "..... ..... ####. #...# #...# #...# ####. #.... #....",
    "q": "..... ..... .#### #...# #...# #...# .#### ....# ....#",
    "r": "..... ..... #.##. ##..# #.... #.... #....",
    "s": "..... ..... .#### #.... .###. ....# ####.",
    "t": ".#... .#... ###.. .#... .#... .#..# ..##.",
    "u": "..... ..... #...# #...# #...# #..## .##.#",
    "v": "..... ..... #...# #...# #...# .#.#. ..#..",
    "w": "..... ..... #...# #...# #.#.# #.#.# .#.#.",
    "x": "..... ..... #...# .#.#. ..#.. .#.#. #...#",
    "y": "..... ..... #...# #...# #...# #...# .#### ....# .###.",
    "z": "..... ..... ##### ...#. ..#.. .#... #####",
    "{": "...## ..#.. ..#.. .#... ..#.. ..#.. ...##",
    "|": "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "}": "##... ..#.. ..#.. ...#. ..#.. ..#.. ##...",
    "~": "..... ..... .#... #.#.# ...#.",
}


def _glyph(rows: str) -> np.ndarray:
    bitmap = np.zeros((GLYPH_HEIGHT, GLYPH_WIDTH), dtype=bool)
    for r, row in enumerate(rows.split()):
        bitmap[r] = [c == "#" for c in row]
    return bitmap


#: The bitmap of every printable ASCII character: ``(GLYPH_HEIGHT, GLYPH_WIDTH)`` booleans.
GLYPHS: dict[str, np.ndarray] = {char: _glyph(rows) for char, rows in _FONT.items()}

# Hepburn romaji of the basic hiragana, for KMNIST's class names.
_ROMAJI = dict(
    zip(
        "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわゐゑをん",
        "a i u e o ka ki ku ke ko sa shi su se so ta chi tsu te to na ni nu ne no ha hi fu he ho "
        "ma mi mu me mo ya yu yo ra ri ru re ro wa wi we wo n".split(),
    )
)


def label_text(name: str, index: int) -> str:
    """``name`` if the font can draw it, else its romaji, else the class ``index``.

    >>> label_text("Ankle boot", 9), label_text("き", 1), label_text("Ω", 3)
    ('Ankle boot', 'ki', '3')
    """
    if all(char in GLYPHS for char in name):
        return name
    romaji = "".join(_ROMAJI.get(char, "\0") for char in name)
    if romaji and all(char in GLYPHS for char in romaji):
        return romaji
    return str(index)


def text_bitmap(text: str, scale: int = 1) -> np.ndarray:
    """``text`` drawn in the bitmap font: a boolean array, ``scale`` pixels per font pixel.

    Characters outside printable ASCII are drawn as ``?``.
    """
    width = max(len(text) * ADVANCE - 1, 0)
    bitmap = np.zeros((GLYPH_HEIGHT, width), dtype=bool)
    for i, char in enumerate(text):
        bitmap[:, i * ADVANCE : i * ADVANCE + GLYPH_WIDTH] = GLYPHS.get(char, GLYPHS["?"])
    return bitmap.repeat(scale, axis=0).repeat(scale, axis=1)


def _paste_text(canvas: np.ndarray, text: str, top: int, center: int, scale: int, shade: int) -> None:
    """Draw ``text`` centred on column ``center``, clipped to the canvas."""
    ink = text_bitmap(text, scale)
    left = center - ink.shape[1] // 2
    # Clip to the canvas (a title longer than the grid is cut, not an error).
    src_left = max(0, -left)
    left = max(0, left)
    width = min(ink.shape[1] - src_left, canvas.shape[1] - left)
    region = canvas[top : top + ink.shape[0], left : left + width]
    region[ink[: region.shape[0], src_left : src_left + width]] = shade


BACKGROUND = 48
TEXT = 235
TITLE = 200


def image_grid(
    images: np.ndarray,
    labels: list[str],
    *,
    title: str | None = None,
    columns: int | None = None,
    scale: int | None = None,
    text_scale: int = 2,
) -> np.ndarray:
    """One grayscale picture of ``images`` (N, H, W uint8) in a grid, each with its label below.

    Parameters
    ----------
    images : ndarray
        ``(N, H, W)`` uint8 images, drawn as stored (MNIST: white ink on black).
    labels : list of str
        One caption per image; pass them through :func:`label_text` first.
    title : str, optional
        A line above the grid.
    columns : int, optional
        Default ``ceil(sqrt(N))``, a square-ish grid.
    scale : int, optional
        Screen pixels per image pixel; default so that a 28x28 image is 84 pixels wide.
    text_scale : int
        Screen pixels per font pixel.

    Returns
    -------
    ndarray
        ``(height, width)`` uint8.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"image_grid() needs (N, H, W) uint8 images, got {images.shape} {images.dtype}")
    n, h, w = images.shape
    if len(labels) != n:
        raise ValueError(f"image_grid() got {n} images but {len(labels)} labels")
    if scale is None:
        scale = max(1, round(84 / max(h, w, 1)))
    columns = max(1, columns or math.ceil(math.sqrt(max(n, 1))))
    rows = max(1, math.ceil(n / columns))
    pad = 3 * text_scale
    label_width = max((len(t) * ADVANCE - 1) * text_scale for t in labels) if labels else 0
    cell_w = max(w * scale, label_width) + 2 * pad
    cell_h = h * scale + text_scale * (GLYPH_HEIGHT + 2) + 2 * pad
    title_h = text_scale * (GLYPH_HEIGHT + 4) if title else 0
    title_w = (len(title) * ADVANCE - 1) * text_scale + 2 * pad if title else 0
    # A grid narrower than its title is centred on a canvas wide enough for it.
    offset = max(0, title_w - columns * cell_w) // 2
    canvas = np.full((title_h + rows * cell_h, max(columns * cell_w, title_w)), BACKGROUND, dtype=np.uint8)
    if title:
        _paste_text(canvas, title, 2 * text_scale, canvas.shape[1] // 2, text_scale, TITLE)
    for i in range(n):
        r, c = divmod(i, columns)
        top = title_h + r * cell_h + pad
        center = offset + c * cell_w + cell_w // 2
        left = center - w * scale // 2
        canvas[top : top + h * scale, left : left + w * scale] = images[i].repeat(scale, 0).repeat(scale, 1)
        _paste_text(canvas, labels[i], top + h * scale + text_scale, center, text_scale, TEXT)
    return canvas


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a ``(height, width)`` uint8 array."""
    image = np.ascontiguousarray(image)
    if image.ndim != 2 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"png_bytes() needs a non-empty (height, width) uint8 array, got {image.shape} {image.dtype}")
    height, width = image.shape
    # Every scanline starts with its filter type; 0 (none) compresses these flat images well.
    raw = np.zeros((height, width + 1), dtype=np.uint8)
    raw[:, 1:] = image
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def write_png(path, image: np.ndarray) -> None:
    """Write ``image`` to ``path`` as PNG; the file appears whole or not at all."""
    data = png_bytes(image)
    # The temporary file is private (0600); the picture gets the mode any new file would get.
    umask = os.umask(0)
    os.umask(umask)
    with atomic_write(path) as out:
        os.fchmod(out.fileno(), 0o666 & ~umask)
        out.write(data)


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR chunk (raises ValueError if it is not a PNG)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", data[16:24])
