"""DAVIS reader: standard folder layout, lazy per frame, 2016 binary and 2017 palette masks.

DAVIS/ImageSets/<year>/<split>.txt
DAVIS/JPEGImages/<resolution>/<sequence>/<frame>.jpg
DAVIS/Annotations/<resolution>/<sequence>/<frame>.png
"""

from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import cv2
import numpy as np


# DAVIS palette: index k gets the k-th colour of the standard VOC-style palette.
def davis_palette() -> np.ndarray:
    """(256, 3) uint8 palette of the DAVIS annotation PNGs."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, colour = index, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                colour[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        palette[index] = colour
    return palette


def read_image(path: Union[str, Path]) -> np.ndarray:
    """(H, W, 3) uint8 RGB; raises ValueError for an unreadable file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def read_mask(path: Union[str, Path], binary: bool) -> np.ndarray:
    """(H, W) uint8 labels. ``binary``: any value > 127 is object 1 (DAVIS 2016, also LA/RGB files);
    otherwise palette indices are the object ids (DAVIS 2017)."""
    from PIL import Image  # here, not at import: a lent GPU machine has no Pillow (it reads packs)

    with Image.open(path) as image:
        if binary:
            array = np.asarray(image.convert("L"))
            return (array > 127).astype(np.uint8)
        if image.mode != "P":
            array = np.asarray(image.convert("L"))
            return (array > 127).astype(np.uint8)
        return np.asarray(image).astype(np.uint8)


def write_mask(path: Union[str, Path], labels: np.ndarray) -> None:
    """Write labels as a palette PNG in the DAVIS convention."""
    from PIL import Image

    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(davis_palette().flatten().tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


class DavisSequence:
    """One sequence; frames and masks are read when asked for."""

    def __init__(self, root: Path, name: str, resolution: str, binary: bool):
        self.name = name
        self.binary = binary
        image_dir = root / "JPEGImages" / resolution / name
        self.mask_dir = root / "Annotations" / resolution / name
        self.frame_paths = sorted(image_dir.glob("*.jpg"))
        if not self.frame_paths:
            raise ValueError(f"no frames in {image_dir}")
        self.frame_names = [p.stem for p in self.frame_paths]

    def __len__(self) -> int:
        return len(self.frame_paths)

    def image(self, index: int) -> np.ndarray:
        return read_image(self.frame_paths[index])

    def mask(self, index: int) -> Optional[np.ndarray]:
        """Labels of frame ``index``, or None when the frame has no annotation file."""
        path = self.mask_dir / f"{self.frame_names[index]}.png"
        return read_mask(path, self.binary) if path.is_file() else None

    def images(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self.image(index)


class Davis:
    """A DAVIS split. ``year`` 2016: binary masks; 2017: palette multi-object masks."""

    def __init__(
        self,
        root: Union[str, Path],
        year: int = 2016,
        split: str = "val",
        resolution: str = "480p",
        sequences: Optional[Sequence[str]] = None,
    ):
        self.root = Path(root)
        if year not in (2016, 2017):
            raise ValueError(f"year must be 2016 or 2017, got {year}")
        self.binary = year == 2016
        self.resolution = resolution
        if sequences is None:
            listing = self.root / "ImageSets" / str(year) / f"{split}.txt"
            if not listing.is_file():
                raise ValueError(f"no sequence list {listing}")
            sequences = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        self.sequence_names: List[str] = list(sequences)

    def __len__(self) -> int:
        return len(self.sequence_names)

    def sequence(self, name: str) -> DavisSequence:
        return DavisSequence(self.root, name, self.resolution, self.binary)

    def __iter__(self) -> Iterator[DavisSequence]:
        for name in self.sequence_names:
            yield self.sequence(name)
