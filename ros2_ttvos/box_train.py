"""``ttvos-box-train``: train the box head (model/box_head.py) on the tracker's frozen trunk.

    ttvos-box-train --config config/box_head.yaml [--resume] [--minutes M]
    ttvos-box-train --config config/box_head.yaml --export ros2_ttvos/weights/ttvos_box_head.pt
    ttvos-box-train --config config/box_head.yaml --plot      # RUN_DIR/curves.png

Samples come from the still sets and DAVIS16 train frames (``data/box_samples.py``), never
from the hold-out sequences or the hold-out still shards. Every ``holdout_every`` steps the head
is scored on those (``prompt_holdout``): mean J of the mask a box makes, with the exact box and a
jittered one, over the hold-out sequences' frames and the hold-out stills; the best checkpoint
on that mean is ``best.pt``, which ``--export`` writes as a float16 box head file.
"""

import argparse
import json
import logging
import math
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ros2_ttvos import checkpoint, metrics
from ros2_ttvos.backends import TorchBackend
from ros2_ttvos.data.box_samples import PromptBatches, frame_sampler
from ros2_ttvos.data.davis import Davis
from ros2_ttvos.data.pack import PackedStills
from ros2_ttvos.model.box_head import BoxHead, BoxHeadConfig, BoxPrompter
from ros2_ttvos.prompt_crops import jittered, mask_box
from ros2_ttvos.prompts import head_probabilities
from ros2_ttvos.run_log import append_row
from ros2_ttvos.schedule import cpu_has_native_bf16, load_config, resolve_precision
from ros2_ttvos.visualize import plot_box_run

LOG = logging.getLogger("ttvos-box-train")
LOG_FIELDS = [
    "step",
    "lr",
    "loss",
    "holdout_sequences_J",
    "holdout_jittered_J",
    "holdout_stills_J",
    "selection",
    "time",
]
HOLDOUT_JITTER = 0.1  # uniform per side, as ttvos-eval --box-jitter 0.1


def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft IoU loss, per sample then averaged."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    prob = torch.sigmoid(logits)
    overlap = (prob * targets).sum(dim=(1, 2, 3))
    union = (prob + targets - prob * targets).sum(dim=(1, 2, 3))
    return bce + (1.0 - overlap / union.clamp(min=1.0)).mean()


def box_probability(backend: TorchBackend, image: np.ndarray, box) -> np.ndarray:
    """The head's foreground probability for ``box`` on ``image``, at the image's size."""
    return head_probabilities(backend, image, {1: box}, {})[1][0]


def prompt_holdout(backend: TorchBackend, sequences, stills: List[Tuple[np.ndarray, np.ndarray]]):
    """Mean J of box-made masks on the hold-out: every 3rd frame of ``sequences`` with exact and
    jittered boxes (fixed seed), and ``stills`` with exact boxes."""
    rng = np.random.default_rng(0)
    exact, jitter, still_j = [], [], []
    for sequence in sequences:
        for index in range(0, len(sequence), 3):
            mask = sequence.mask(index)
            if mask is None or not mask.any():
                continue
            image, truth = sequence.image(index), mask > 0
            box = mask_box(truth)
            for scores, prompt in ((exact, box), (jitter, jittered(box, rng, HOLDOUT_JITTER, truth.shape))):
                found = box_probability(backend, image, prompt) > 0.5
                scores.append(float(metrics.region_similarity(found[None], truth[None])[0]))
    for image, mask in stills:
        truth = mask > 0
        found = box_probability(backend, image, mask_box(truth)) > 0.5
        still_j.append(float(metrics.region_similarity(found[None], truth[None])[0]))
    scores = {
        "holdout_sequences_J": float(np.mean(exact)),
        "holdout_jittered_J": float(np.mean(jitter)),
        "holdout_stills_J": float(np.mean(still_j)),
    }
    scores["selection"] = float(np.mean(list(scores.values())))
    return scores


class BoxTrainer:
    """Owns the head, its optimiser and the run directory of one box-head run."""

    def __init__(self, config: Dict[str, Any]):
        self.config = config
        self.run_dir = Path(config["run_dir"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(int(config.get("threads", 2)))
        torch.manual_seed(config["seed"])
        self.device = torch.device("cpu")
        self.precision = resolve_precision(config.get("precision", "auto"), self.device)
        LOG.info("precision %s (native bf16: %s)", self.precision, cpu_has_native_bf16())
        tracker = checkpoint.build_model(checkpoint.load(config["tracker_weights"]))
        self.trunk_digest = tracker.backbone.frozen_digest()
        self.size = int(config["crop"])
        self.head = BoxHead(BoxHeadConfig(crop=self.size))
        self.prompter = BoxPrompter(tracker.backbone.eval(), self.head)
        for parameter in tracker.backbone.parameters():
            parameter.requires_grad_(False)
        self.backend = TorchBackend(tracker, "cpu", box_prompter=self.prompter)  # the hold-out check's
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=config["lr"])
        self.step = 0
        self.best = -1.0
        data = config["data"]
        pack = Path(data["pack"]).expanduser()
        holdout_shards = set(data["holdout_shards"])
        shard_count = len(list((pack / "stills").glob("shard-*.tar")))
        train_stills = PackedStills(pack, [s for s in range(shard_count) if s not in holdout_shards])
        listing = Path(data["davis_train_list"]).read_text().split()
        names = [name for name in listing if name not in set(data["holdout"])]
        davis = Davis(data["davis_root"], 2016, resolution=data["resolution"], sequences=names + data["holdout"])
        self.batches = PromptBatches(
            train_stills.sample,
            frame_sampler([davis.sequence(name) for name in names]),
            data["still_fraction"],
            config["seed"],
        )
        self.holdout_sequences = [davis.sequence(name) for name in data["holdout"]]
        held = PackedStills(pack, sorted(holdout_shards))
        rng = np.random.default_rng(1)
        self.holdout_stills = [held.sample(rng) for _ in range(int(data.get("holdout_stills", 300)))]
        LOG.info(
            "box head: %d train stills, %d train sequences; hold-out: %s and %d stills",
            len(train_stills), len(names), ", ".join(data["holdout"]), len(self.holdout_stills),
        )  # fmt: skip
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="box-batches")
        self._stop = False

    def learning_rate(self) -> float:
        """Linear warm-up, then cosine decay to a tenth over the run."""
        steps, warmup = self.config["steps"], self.config.get("warmup_steps", 200)
        if self.step < warmup:
            return self.config["lr"] * (self.step + 1) / warmup
        progress = (self.step - warmup) / max(1, steps - warmup)
        return self.config["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def _payload(self) -> Dict[str, Any]:
        return {
            "step": self.step, "best": self.best, "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(), "config": self.config,
        }  # fmt: skip

    def save(self) -> None:
        checkpoint.save_atomic(self._payload(), self.run_dir / "last.pt")

    def resume(self) -> bool:
        path = self.run_dir / "last.pt"
        if not path.is_file():
            return False
        try:
            payload = checkpoint.read_archive(path, "box head run checkpoint")
        except checkpoint.CheckpointError as error:
            raise checkpoint.CheckpointError(f"{error}: remove it to start over") from error
        self.head.load_state_dict(payload["head"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step, self.best = int(payload["step"]), float(payload["best"])
        LOG.info("resumed from %s at step %d (best hold-out %.3f)", path, self.step, self.best)
        return True

    def _log(self, row: Dict[str, Any]) -> None:
        append_row(self.run_dir / "log.csv", LOG_FIELDS, row)

    def train_step(self, batch) -> float:
        crops, prompts, targets = (torch.from_numpy(a) for a in batch)
        crops = crops.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
        targets = targets[:, None].float()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        with torch.autocast("cpu", torch.bfloat16, enabled=self.precision == "bf16"):
            with torch.no_grad():
                features = self.prompter.backbone.frozen_features(crops)
            logits = self.head(features, prompts)
        loss = loss_of(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def holdout_check(self) -> Dict[str, float]:
        self.head.eval()
        scores = prompt_holdout(self.backend, self.holdout_sequences, self.holdout_stills)
        self.head.train()
        if scores["selection"] > self.best:
            self.best = scores["selection"]
            payload = checkpoint.box_head_payload(self.head, self.trunk_digest, step=self.step, holdout=scores)
            checkpoint.save_atomic(payload, self.run_dir / "best.pt")
        LOG.info("step %d hold-out %s (best %.3f)", self.step, json.dumps(scores), self.best)
        return scores

    def request_stop(self, signum, frame) -> None:
        LOG.info("signal %d: stopping after this step", signum)
        self._stop = True

    def run(self, minutes: Optional[float] = None) -> None:
        steps, batch_size = self.config["steps"], self.config["batch"]
        every, save_every = self.config["holdout_every"], 60 * self.config.get("checkpoint_minutes", 5)
        start = last_save = time.monotonic()
        upcoming = self._pool.submit(self.batches.batch, self.step, batch_size, self.size)
        self.head.train()
        with tqdm(total=steps, initial=self.step, desc="box head", unit="step") as progress:
            while self.step < steps and not self._stop:
                batch = upcoming.result()
                upcoming = self._pool.submit(self.batches.batch, self.step + 1, batch_size, self.size)
                loss = self.train_step(batch)
                self.step += 1
                row = {"step": self.step, "lr": self.learning_rate(), "loss": loss, "time": time.time()}
                if self.step % every == 0 or self.step == steps:
                    row.update(self.holdout_check())
                self._log(row)
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.3f}", best=f"{self.best:.3f}")
                if time.monotonic() - last_save > save_every:
                    self.save()
                    last_save = time.monotonic()
                if minutes is not None and time.monotonic() - start > 60 * minutes:
                    break
        self.save()
        self._pool.shutdown(wait=False, cancel_futures=True)


def export_box_head(run_dir: Path, out: Path) -> Dict[str, Any]:
    """Write the run's best head as a float16 box head file; returns its hold-out scores."""
    head, payload = checkpoint.load_box_head(run_dir / "best.pt")
    extra = {"step": payload["step"], "holdout": payload["holdout"]}
    checkpoint.save_atomic(checkpoint.box_head_payload(head, payload["trunk"], half=True, **extra), out)
    return extra


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-box-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config/box_head.yaml"))
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes")
    parser.add_argument("--run-dir", type=Path, help="override the config's run_dir")
    parser.add_argument("--export", type=Path, metavar="OUT", help="write the run's best head to OUT and exit")
    parser.add_argument("--plot", action="store_true", help="write RUN_DIR/curves.png and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
        if args.run_dir:
            config["run_dir"] = str(args.run_dir.expanduser().resolve())
        if args.plot:
            print(plot_box_run(Path(config["run_dir"])))
            return 0
        if args.export:
            extra = export_box_head(Path(config["run_dir"]), args.export)
            print(f"wrote {args.export} (step {extra['step']}, hold-out {json.dumps(extra['holdout'])})")
            return 0
        trainer = BoxTrainer(config)
        if args.resume and not trainer.resume():
            LOG.info("no checkpoint in %s: starting a new run", trainer.run_dir)
        elif not args.resume and (trainer.run_dir / "last.pt").exists():
            parser.error(f"{trainer.run_dir} already has a run: pass --resume or choose another run_dir")
        signal.signal(signal.SIGTERM, trainer.request_stop)
        signal.signal(signal.SIGINT, trainer.request_stop)
        trainer.run(args.minutes)
    except (ValueError, OSError, checkpoint.CheckpointError) as error:
        LOG.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
