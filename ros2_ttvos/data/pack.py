"""A training pack: the training sets in a compact form that travels and that the trainer reads
directly (``data: {pack: DIR}`` in a training config).

    DIR/pack.json                   what is inside, and the sizes
    DIR/davis/<seq>.mp4             a DAVIS16 train sequence at 480p, H.264 (CRF ``DAVIS_CRF``)
    DIR/davis/<seq>.npz             its masks, bit-packed (``masks``: (T, H, ceil(W/8)) uint8,
                                    ``annotated``: which frames have a mask, ``width``)
    DIR/stills/shard-NNN.tar        still image/mask pairs re-encoded at most ``STILL_SIDE`` px on
                                    the long side (JPEG + PNG), shards of at most ``--shard-mib``

Written with PyAV (libx264) here; read with OpenCV and numpy alone, which is all a lent GPU
machine has. A GPU chunk carries the DAVIS part and one shard (``--shards``).
"""

import io
import json
import tarfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ros2_ttvos.data.clips import StillImages
from ros2_ttvos.data.davis import Davis

DAVIS_CRF = 23
DAVIS_FPS = 24
STILL_SIDE = 432
STILL_JPEG_QUALITY = 90


def _write_video(frames: Sequence[np.ndarray], path: Path) -> None:
    import av  # only the writer needs PyAV

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=DAVIS_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(DAVIS_CRF), "preset": "slow"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def read_video(path: Path) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of a video file (OpenCV)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(bgr[:, :, ::-1])
    capture.release()
    if not frames:
        raise ValueError(f"cannot read video {path}")
    return np.stack(frames)


class PackedSequence:
    """A DAVIS sequence of a pack, with ``DavisSequence``'s reading interface; the video is
    decoded once, when a frame is first asked for."""

    def __init__(self, folder: Path, name: str):
        self.name = name
        self._video = folder / f"{name}.mp4"
        with np.load(folder / f"{name}.npz") as stored:
            self._masks, self._annotated, self._width = stored["masks"], stored["annotated"], int(stored["width"])
        self._frames: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self._annotated)

    def image(self, index: int) -> np.ndarray:
        if self._frames is None:
            self._frames = read_video(self._video)
            if len(self._frames) != len(self):
                raise ValueError(f"{self._video}: {len(self._frames)} frames, its masks say {len(self)}")
        return self._frames[index]

    def mask(self, index: int) -> Optional[np.ndarray]:
        if not self._annotated[index]:
            return None
        return np.unpackbits(self._masks[index], axis=-1, count=self._width)


def packed_sequences(pack: Path, names: Sequence[str]) -> List[PackedSequence]:
    return [PackedSequence(Path(pack) / "davis", name) for name in names]


def _still_shards(pack: Path, shards: Optional[Sequence[int]]) -> List[Path]:
    paths = sorted((Path(pack) / "stills").glob("shard-*.tar"))
    if shards is not None:
        paths = [p for p in paths if int(p.stem.split("-")[1]) in set(shards)]
    return paths


class PackedStills(StillImages):
    """Still image/mask pairs from pack shards, kept encoded in memory and decoded when drawn."""

    def __init__(self, pack: Path, shards: Optional[Sequence[int]] = None):
        encoded: Dict[str, Dict[str, bytes]] = {}
        for shard in _still_shards(pack, shards):
            with tarfile.open(shard) as archive:
                for member in archive.getmembers():
                    stem, kind = member.name.rsplit(".", 1)
                    encoded.setdefault(stem, {})[kind] = archive.extractfile(member).read()
        super().__init__([(item["jpg"], item["png"]) for _, item in sorted(encoded.items())])

    def sample(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        image, mask = self.pairs[rng.integers(len(self.pairs))]
        rgb = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        labels = cv2.imdecode(np.frombuffer(mask, np.uint8), cv2.IMREAD_GRAYSCALE)  # stored as {0, 255}
        return np.ascontiguousarray(rgb), (labels > 0).astype(np.uint8)


def _encode_still(image: np.ndarray, mask: np.ndarray) -> Tuple[bytes, bytes]:
    scale = STILL_SIDE / max(image.shape[:2])
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    _, jpg = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, STILL_JPEG_QUALITY])
    _, png = cv2.imencode(".png", (mask > 0).astype(np.uint8) * 255, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return jpg.tobytes(), png.tobytes()


def write_pack(
    davis_root: Path, davis_sequences: Sequence[str], saliency: Sequence[Tuple[str, str]], out: Path, shard_mib: float
) -> Dict:
    """Write a pack of the DAVIS sequences ``davis_sequences`` (2016 train, hold-out included)
    and the still sets ``saliency`` ((image_dir, mask_dir) pairs) into ``out``."""
    davis = Davis(davis_root, 2016, resolution="480p", sequences=list(davis_sequences))
    (out / "davis").mkdir(parents=True, exist_ok=True)
    (out / "stills").mkdir(parents=True, exist_ok=True)
    for sequence in tqdm(list(davis), desc="pack DAVIS", unit="sequence"):
        frames = list(sequence.images())
        masks = [sequence.mask(i) for i in range(len(sequence))]
        blank = np.zeros(frames[0].shape[:2], np.uint8)
        stacked = np.stack([m if m is not None else blank for m in masks]).astype(bool)
        _write_video(frames, out / "davis" / f"{sequence.name}.mp4")
        np.savez_compressed(
            out / "davis" / f"{sequence.name}.npz", masks=np.packbits(stacked, axis=-1),
            annotated=np.array([m is not None for m in masks]), width=np.array(blank.shape[1]),
        )  # fmt: skip
    stills = StillImages.from_folders(saliency)
    limit = int(shard_mib * 2**20)
    pending: List[Tuple[str, bytes]] = []  # (member name, data) of the shard being filled
    shard_count = 0

    def flush() -> None:
        nonlocal shard_count
        with tarfile.open(out / "stills" / f"shard-{shard_count:03d}.tar", "w") as shard:
            for name, data in pending:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                shard.addfile(info, io.BytesIO(data))
        pending.clear()
        shard_count += 1

    for number, (image_path, mask_path) in enumerate(tqdm(stills.pairs, desc="pack stills", unit="image")):
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)[:, :, ::-1]
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127  # soft or RGB masks too
        jpg, png = _encode_still(image, mask.astype(np.uint8))
        # Each tar member takes its data rounded up to 512 bytes plus a 512-byte header.
        filled = sum(len(data) + 1024 for _, data in pending) + 10240
        if pending and filled + len(jpg) + len(png) + 2048 > limit:
            flush()
        pending += [(f"{number:06d}.jpg", jpg), (f"{number:06d}.png", png)]
    if pending:
        flush()
    description = {
        "davis_sequences": list(davis_sequences),
        "davis_mib": round(sum(p.stat().st_size for p in (out / "davis").iterdir()) / 2**20, 2),
        "stills": len(stills),
        "still_shards": shard_count,
        "still_shard_mib": [round(p.stat().st_size / 2**20, 2) for p in _still_shards(out, None)],
        "davis_crf": DAVIS_CRF,
        "still_side": STILL_SIDE,
    }
    (out / "pack.json").write_text(json.dumps(description, indent=2))
    return description
