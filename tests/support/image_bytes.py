"""Tiny real image files built by hand (struct and zlib only): PNG, APNG, GIF, WebP, JPEG.

They are structurally valid in the parts the bot reads (magic bytes, PNG chunks, GIF blocks,
WebP RIFF chunks); the pixel data is minimal but real where cheap (PNG, GIF).
"""

from __future__ import annotations

import struct
import zlib


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(*, shade: int = 0, animated: bool = False) -> bytes:
    """A 1x1 greyscale PNG of the given shade; with `animated`, an APNG (acTL chunk)."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    animation = _png_chunk(b"acTL", struct.pack(">II", 2, 0)) if animated else b""
    pixels = _png_chunk(b"IDAT", zlib.compress(bytes([0, shade % 256])))
    return b"\x89PNG\r\n\x1a\n" + header + animation + pixels + _png_chunk(b"IEND", b"")


_GIF_FRAME = (
    b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control extension (delay 0.1 s)
    + b"\x2c"
    + struct.pack("<HHHH", 0, 0, 1, 1)
    + b"\x00"  # image descriptor, no local colour table
    + b"\x02\x02\x44\x01\x00"  # LZW minimum code size 2, one data sub-block, terminator
)
_NETSCAPE_LOOP = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"


def gif(*, frames: int = 1, loop: bool = False) -> bytes:
    """A 1x1 GIF89a with `frames` frames (and a NETSCAPE looping block when `loop`)."""
    screen = struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return b"GIF89a" + screen + (_NETSCAPE_LOOP if loop else b"") + _GIF_FRAME * frames + b"\x3b"


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    """One RIFF chunk, padded to an even length."""
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def webp(*, animated: bool = False, extended: bool = False) -> bytes:
    """A WebP: plain lossless (VP8L), or with a VP8X header, animated when `animated`."""
    body = _riff_chunk(b"VP8L", b"\x2f\x00\x00\x00\x00\x88\x88\x08")
    if animated or extended:
        flags = 0x02 if animated else 0x00
        header = _riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + b"\x00\x00\x00\x00\x00\x00")
        body = header + (_riff_chunk(b"ANIM", b"\x00" * 6) if animated else b"") + body
    payload = b"WEBP" + body
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def jpeg() -> bytes:
    """The start of a JPEG (SOI, a JFIF APP0 segment) and its end marker."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8" + app0 + b"\xff\xd9"
