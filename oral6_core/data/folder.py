"""``folder:PATH``: an image folder (ImageFolder layout or ``manifest.csv``) with an optional ``dataset.toml``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ..components import DatasetSource
from ..errors import ConfigError, DataError
from . import DataBundle
from .images import cached_images, list_image_folder, read_manifest
from .spec import read_spec
from .tables import UserDataConfig, assemble, encode_table

MANIFEST = "manifest.csv"
SPEC = "dataset.toml"


def spec_path(given: Path | None, default: Path) -> Path:
    """The spec file to read: ``given`` (which must exist) or ``default`` (which may be absent)."""
    if given is not None and not given.is_file():
        raise ConfigError(f"dataset.spec points at {given}, which does not exist.")
    return given or default


class FolderConfig(UserDataConfig):
    image_size: int | tuple[int, int] | None = Field(
        None, description="Resize every image to SIDE×SIDE or [HEIGHT, WIDTH] (required when sizes differ)."
    )
    channels: int | None = Field(None, description="1 (grey), 3 (RGB) or 4 (RGBA); default: 1 if every image is grey, else 3.")
    cache: bool = Field(True, description="Cache the decoded images so later loads skip decoding.")
    cache_dir: Path | None = Field(None, description="Folder of the cache (default: PATH/.oral6-cache).")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: int | None) -> int | None:
        if value not in (None, 1, 3, 4):
            raise ValueError("must be 1, 3 or 4")
        return value

    @field_validator("image_size")
    @classmethod
    def _size(cls, value: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
        sides = (value,) if isinstance(value, int) else value or ()
        if any(s < 1 for s in sides):
            raise ValueError("sides must be positive")
        return value


class FolderDataset(DatasetSource):
    """Your image folder: ImageFolder layout or manifest.csv (file, label, split, env, attributes) + dataset.toml."""

    name = "folder:*"
    Config = FolderConfig

    def load(self, seed: int = 0) -> DataBundle:
        c = self.config
        root = Path(c.variant).expanduser()
        if not root.is_dir():
            raise DataError(f"folder:{c.variant}: {root} is not a folder. Give the folder that holds the images "
                            f"(ImageFolder layout) or {MANIFEST}.")
        spec = read_spec(spec_path(c.spec, root / SPEC))
        listing = read_manifest(root / MANIFEST) if (root / MANIFEST).is_file() else list_image_folder(root)
        encoded = encode_table(listing.table, spec, c)
        size = (c.image_size, c.image_size) if isinstance(c.image_size, int) else c.image_size
        images, save_cache = cached_images(listing, root, c.cache_dir, size, c.channels, c.cache)
        bundle = assemble(f"folder:{c.variant}", images.float() / 255, encoded, c)
        save_cache()
        return bundle
