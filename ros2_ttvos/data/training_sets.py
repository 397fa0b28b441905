"""What a training run trains and selects on, from its config's ``data`` section: the DAVIS16
train clips and still images (from the folders or from a pack), the hold-out sequences kept out
of them, and the multi-object benchmark composed from those hold-out sequences."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from ros2_ttvos.data.clips import DavisClips, StillImages
from ros2_ttvos.data.davis import Davis, DavisSequence
from ros2_ttvos.data.multi_benchmark import make_benchmark
from ros2_ttvos.data.pack import PackedStills, packed_sequences

LOG = logging.getLogger(__name__)


@dataclass
class TrainingSets:
    clips: DavisClips  # the train sequences without the hold-out ones
    stills: Optional[Any]  # StillImages or PackedStills; None without still images
    holdout: List[Any]  # DavisSequence or PackedSequence: the single-object hold-out (model selection)


def training_sets(data: Dict[str, Any]) -> TrainingSets:
    """The clips, stills and hold-out sequences of ``data`` (``data.pack`` when set: the
    compact form that travels, data/pack.py)."""
    names = train_sequences(data)
    if data.get("pack"):
        pack = Path(data["pack"]).expanduser()
        sequences = {s.name: s for s in packed_sequences(pack, names)}
        stills = PackedStills(pack, data.get("pack_shards"))
    else:
        davis = Davis(data["davis_root"], 2016, resolution=data["resolution"], sequences=names)
        sequences = {name: davis.sequence(name) for name in names}
        stills = StillImages.from_folders(data["saliency"]) if data.get("saliency") else None
    holdout = set(data["holdout"])
    clips = DavisClips([sequences[name] for name in names if name not in holdout])
    return TrainingSets(clips, stills, [sequences[name] for name in data["holdout"]])


def train_sequences(data: Dict[str, Any]) -> List[str]:
    """Names of the DAVIS16 train sequences (hold-out ones included); ValueError when a
    hold-out sequence is not one of them."""
    if data.get("pack"):
        names = json.loads((Path(data["pack"]).expanduser() / "pack.json").read_text())["davis_sequences"]
    else:
        listing = Path(data["davis_train_list"])
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    missing = [h for h in data["holdout"] if h not in names]
    if missing:
        raise ValueError(f"hold-out sequences {missing} are not training sequences")
    if len(data["holdout"]) < 3:
        LOG.warning("fewer than 3 hold-out sequences: model selection will be noisy")
    return names


def multi_holdout(data: Dict[str, Any]) -> List[DavisSequence]:
    """The sequences of the multi-object benchmark made from the hold-out sequences
    (``data.multi_holdout: {dir, seed, variants}``), composed first if ``dir`` lacks it; [] when
    the config has none."""
    spec = data.get("multi_holdout")
    if not spec:
        return []
    folder = Path(spec["dir"]).expanduser()
    if not (folder / "benchmark.json").is_file():
        LOG.info("composing the multi-object hold-out benchmark in %s", folder)
        make_benchmark(Path(data["davis_root"]), data["holdout"], folder, spec.get("seed", 0), spec.get("variants", 3))
    return list(Davis(folder, 2017, "val", data["resolution"]))
