"""Image files of a ``folder:`` dataset: the listing (ImageFolder layout or ``manifest.csv``), decoding, and the cache.

Decoded images are cached as one uint8 tensor keyed by a hash of the file list (relative paths,
sizes, modification times) and the decode options, so a second load reads one file instead of
decoding every image. The cache is written atomically and only after the whole load succeeded.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..io import save_torch
from .tables import Table

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLIT_FOLDERS = {"train", "val", "valid", "validation", "test"}
RESERVED_COLUMNS = ("file", "label", "split", "env")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
CACHE_FOLDER = ".oral6-cache"
CACHE_VERSION = 1


@dataclass
class Listing:
    """The image files in row order and their columns."""

    files: list[Path]
    table: Table


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_images(folder: Path) -> list[tuple[Path, str]]:
    return [(f, d.name) for d in _visible_dirs(folder) for f in sorted(d.rglob("*"))
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]


def list_image_folder(root: Path) -> Listing:
    """torchvision's ImageFolder layout, ``root/CLASS/*.png``, optionally under ``root/{train,val,test}/``."""
    tops = _visible_dirs(root)
    splits = bool(tops) and all(d.name.lower() in SPLIT_FOLDERS for d in tops)
    rows = [(f, label, d.name if splits else None) for d in (tops if splits else [root]) for f, label in _class_images(d)]
    if not rows:
        raise DataError(
            f"{root} holds no images in ImageFolder layout (one sub-folder per class, e.g. {root}/cat/001.png) and no "
            f"manifest.csv. Image suffixes read: {', '.join(sorted(IMAGE_SUFFIXES))}."
        )
    files = [r[0] for r in rows]
    table = Table(root, np.array([r[1] for r in rows]), lambda i: str(files[i]),
                  split=np.array([r[2] for r in rows]) if splits else None)
    return Listing(files, table)


def _manifest_rows(path: Path, reader: csv.DictReader) -> tuple[list[str], list[dict[str, str]], list[int]]:
    """The header, the rows (values stripped) and each row's line number."""
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("file", "label") if c not in header]
    if missing:
        raise DataError(f"{path} line 1: the header {header} lacks the column(s) {missing}; it needs file and label.")
    if len(set(header)) != len(header):
        raise DataError(f"{path} line 1: the header {header} names a column twice.")
    reader.fieldnames = header
    records, lines = [], []
    for record in reader:
        if None in record or None in record.values():
            raise DataError(f"{path} line {reader.line_num}: the row does not have the {len(header)} fields of the header.")
        records.append({k: v.strip() for k, v in record.items()})
        lines.append(reader.line_num)
    return header, records, lines


def read_manifest(path: Path) -> Listing:
    """``manifest.csv``: columns file, label, optional split and env, any further columns are attributes."""
    root = path.parent
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        try:
            header, records, lines = _manifest_rows(path, reader)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8 CSV.") from None
        except csv.Error as exc:
            raise DataError(f"{path} line {reader.line_num}: not valid CSV ({exc}).") from None
    if not records:
        raise DataError(f"{path} has a header but no rows.")
    row = lambda i: f"{path} line {lines[i]}"  # noqa: E731
    files = []
    for i, record in enumerate(records):
        file = root / record["file"]
        if not record["file"] or not file.is_file():
            raise DataError(f"{row(i)}: the image {record['file']!r} does not exist (paths are relative to {root}).")
        files.append(file)
    column = lambda name: np.array([r[name] for r in records]) if name in header else None  # noqa: E731
    attrs = {c: column(c) for c in header if c not in RESERVED_COLUMNS}
    return Listing(files, Table(path, column("label"), row, column("env"), column("split"), attrs))  # type: ignore[arg-type]


def cache_key(root: Path, files: list[Path], image_size: tuple[int, int] | None, channels: int | None) -> str:
    """Hash of the decode options and every file's relative path, size and modification time."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, image_size, channels]).encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root) if file.is_relative_to(root) else file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _open_error(row: str, file: Path, exc: Exception) -> DataError:
    return DataError(f"{row}: cannot read the image {file}: {exc}. Replace or remove the file.")


def decode_images(listing: Listing, image_size: tuple[int, int] | None, channels: int | None) -> Tensor:
    """Every image as uint8 [N, C, H, W]; mixed sizes need ``image_size``; channels default to grey or RGB."""
    from PIL import Image

    files, row = listing.files, listing.table.row
    sizes, modes = [], []
    for i, file in enumerate(files):
        try:
            with Image.open(file) as image:
                sizes.append(image.size)
                modes.append(image.mode)
        except Exception as exc:  # Pillow raises several types for bad files
            raise _open_error(row(i), file, exc) from None
    if image_size is None:
        odd = next((i for i, s in enumerate(sizes) if s != sizes[0]), None)
        if odd is not None:
            raise DataError(
                f"{row(odd)}: the image {files[odd]} is {sizes[odd][0]}×{sizes[odd][1]} but {files[0]} is "
                f"{sizes[0][0]}×{sizes[0][1]}. Set dataset.image_size=SIDE (or [HEIGHT, WIDTH]) to resize every image."
            )
        height, width = sizes[0][1], sizes[0][0]
    else:
        height, width = image_size
    channels = channels or (1 if all(m in GREY_MODES for m in modes) else 3)
    out = np.empty((len(files), height, width, channels), dtype=np.uint8)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as image:
                image = image.convert(CHANNEL_MODES[channels])
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                out[i] = np.asarray(image).reshape(height, width, channels)
        except Exception as exc:
            raise _open_error(row(i), file, exc) from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def cached_images(listing: Listing, root: Path, cache_dir: Path | None, image_size: tuple[int, int] | None,
                  channels: int | None, use_cache: bool) -> tuple[Tensor, Callable[[], None]]:
    """The decoded images (from the cache when its key matches) and a function that caches freshly decoded ones.

    The caller calls the function only once the whole load has succeeded, so a failed load caches nothing.
    """
    if not use_cache:
        return decode_images(listing, image_size, channels), lambda: None
    key = cache_key(root, listing.files, image_size, channels)
    path = (cache_dir or root / CACHE_FOLDER) / f"images-{key[:24]}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == key and saved["images"].shape[0] == len(listing.files):
                return saved["images"], lambda: None
        except Exception:  # a stale or damaged cache is rebuilt
            pass
    images = decode_images(listing, image_size, channels)

    def save() -> None:
        try:
            save_torch({"key": key, "images": images}, path)
        except OSError as exc:
            warnings.warn(f"Could not write the image cache {path} ({exc}); set dataset.cache_dir to a writable folder.", stacklevel=3)

    return images, save
