"""
Stream packing: how several fixed-width fields share one port word.

Every bus of our accelerators packs its fields low-first: field 0 in the least significant
bits (a pixel's channels on `in_data`, the classes on `out_logits`, the words of a wide
value in the Verilator harness). This module is that convention, written once, for the
API, the Verilator backend and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def pack_fields(fields: Sequence[int], width: int) -> int:
    """Pack fields of `width` bits into one int, fields[0] in the least significant bits."""
    mask = (1 << width) - 1
    value = 0
    for index, item in enumerate(fields):
        value |= (int(item) & mask) << (width * index)
    return value


def split_fields(value: int, count: int, width: int, signed: bool = True) -> list[int]:
    """The inverse of `pack_fields`: `count` fields of `width` bits, two's complement if signed."""
    mask = (1 << width) - 1
    fields = []
    for index in range(count):
        field = (value >> (index * width)) & mask
        if signed and field >> (width - 1):
            field -= 1 << width
        fields.append(field)
    return fields


def pack_pixels(x_int: np.ndarray, bits: int) -> list[int]:
    """(N, C, H, W) integers -> one int per pixel in raster order, channel 0 in the low bits."""
    channels = x_int.shape[1]
    pixels = np.transpose(x_int, (0, 2, 3, 1)).reshape(-1, channels)
    return [pack_fields(row, bits) for row in pixels.tolist()]


def pack_beats(x_int: np.ndarray, bits: int, pixels_per_cycle: int = 1,
               rows: int | None = None) -> list[int]:
    """
    (N, C, H, W) integers -> one int per beat: `pixels_per_cycle` P consecutive pixels of a
    row per beat, pixel 0 in the low bits (each pixel as `pack_pixels`), rows in raster
    order. A row of width W takes ceil(W/P) beats; the lanes past its end in its last beat
    are zero (the hardware ignores them). P = 1 is `pack_pixels`. A beat of `rows` k > 1
    holds k whole rows (P = k*W: the raster cut into beats of P pixels); by default k = P/W
    when P > W (the chip's input, passes/to_hw/rates.py), 1 otherwise; `rows=1` forces one
    row per beat with don't-care lanes even when P > W (a conv's output lanes may be).
    """
    n, channels, height, width = x_int.shape
    if rows is None:
        rows = pixels_per_cycle // width if pixels_per_cycle > width else 1
    if rows > 1:
        if pixels_per_cycle != rows * width or height % rows:
            raise ValueError(f"{rows} whole rows per beat need P = {rows}*{width} and a "
                             f"height divisible by {rows}; got P = {pixels_per_cycle}, "
                             f"height {height}")
        beats = np.transpose(x_int, (0, 2, 3, 1)).reshape(-1, pixels_per_cycle * channels)
        return [pack_fields(row, bits) for row in beats.tolist()]
    if pixels_per_cycle == 1:
        return pack_pixels(x_int, bits)
    lanes = pixels_per_cycle
    padded = -(-width // lanes) * lanes
    pixels = np.zeros((n, height, padded, channels), dtype=np.int64)
    pixels[:, :, :width, :] = np.transpose(x_int, (0, 2, 3, 1))
    beats = pixels.reshape(-1, lanes * channels)
    return [pack_fields(row, bits) for row in beats.tolist()]


def word_ints(words: np.ndarray | Sequence[int]) -> Iterable[int]:
    """
    Python ints from ints, or from an unsigned numpy array: shape (N,) one value each, or
    (N, words) with column 0 the least significant word of a wider value.
    """
    if not isinstance(words, np.ndarray):
        return (int(w) for w in words)
    if words.ndim == 1:
        return (int(w) for w in words.tolist())
    width = words.dtype.itemsize * 8
    rows = words.astype(np.uint64, copy=False).tolist()
    return (pack_fields(row, width) for row in rows)
