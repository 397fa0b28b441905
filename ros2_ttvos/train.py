"""Resumable TTVOS training (``ttvos-train``).

    ttvos-train --config config/train.yaml [--resume] [--max-steps N]
    ttvos-train --plot RUN_DIR
    ttvos-train --compare-runs RUN_DIR RUN_DIR ... --out PNG   # hold-out curves side by side
    ttvos-train --export-weights RUN_DIR/best.pt --out ros2_ttvos/weights/ttvos_lite0.pt

A run directory holds ``last.pt`` (written atomically at least every ``checkpoint_minutes``,
on SIGINT/SIGTERM and at the end), ``previous.pt`` (the one before, used when ``last.pt`` is
damaged), ``best.pt`` (best hold-out ``selection`` score, see ``selection.py``) and ``log.csv``
(every loss, every hold-out check).
With ``average_half_life: H`` (steps; a stage may set its own) the run keeps a moving average of
its weights (``weight_average.py``): the checks score it and ``best.pt`` keeps it; with
``holdout_compare_raw: true`` (a stage may set its own) every check scores the trained weights as
well (``raw_*`` columns), and ``best.pt`` keeps them when they score higher.
The learning rate is a pure function of the step (see ``learning_rate``), so the step number is
the whole schedule state. A machine with ``batch_scale: k`` (a lent GPU) trains k of the
schedule's batches in one optimizer step, which counts as k steps (see ``Trainer.stage``).
"""

import argparse
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from tqdm import tqdm

from ros2_ttvos import checkpoint, distributed
from ros2_ttvos.backends import resolve_torch_device
from ros2_ttvos.core_share import CoreShare
from ros2_ttvos.data.batches import BatchSampler, Prefetcher, batch_tensors
from ros2_ttvos.data.training_sets import multi_holdout, training_sets
from ros2_ttvos.evaluate import git_commit
from ros2_ttvos.init_weights import init_backbone, initial_weights
from ros2_ttvos.model import TTVOS, TTVOSConfig, ttvos_losses
from ros2_ttvos.model.recurrent import ClipRunner
from ros2_ttvos.run_lock import RunDirInUseError, hold_run_dir
from ros2_ttvos.run_log import append_row, truncate_rows
from ros2_ttvos.schedule import cpu_has_native_bf16, learning_rate, load_config, resolve_precision, stage_at
from ros2_ttvos.selection import HoldoutSelection
from ros2_ttvos.trainable import adam_over_trained, check_stages, stage_backbone_blocks, train_backbone_blocks
from ros2_ttvos.travel import merge_travel, travel_step, write_travel
from ros2_ttvos.visualize import plot_run, plot_runs_compared
from ros2_ttvos.weight_average import WeightAverage

LOG = logging.getLogger("ttvos-train")
LOG_FIELDS = [
    "step", "stage", "lr", "segmentation", "transition", "auxiliary", "total", "frames_per_s",
    "objects", "data_wait_share", "holdout_J", "holdout_F", "holdout_JF", "multi_JF", "multi_id_switch_rate",
    "selection", "wall_time", "raw_holdout_JF", "raw_multi_JF", "raw_selection", "multi_lost_rate",
    "multi_spilled_rate", "multi_lost_on_return_rate",
]  # fmt: skip


class Trainer:
    """Owns the model, optimiser, data samplers and RNG of one run."""

    def __init__(self, config: Dict[str, Any]):
        self.config = config
        self.run_dir = Path(config["run_dir"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # The run's travelling copy (travel.py): read on resume when later, written on every save.
        self.travel_dir = Path(config["travel_dir"]) if config.get("travel_dir") else None
        torch.set_num_threads(int(config.get("threads", 2)))
        device = resolve_torch_device(config.get("device", "auto"))
        self.ranks = distributed.setup(device)  # several under torchrun, each drawing its own clips
        self.device = distributed.rank_device(device, self.ranks)
        if self.ranks.main:
            hold_run_dir(self.run_dir)  # refuses a second trainer of this run
        alone_on_cpu = self.device.type == "cpu" and self.ranks.world == 1
        self.core_share = (
            CoreShare(int(config.get("threads", 2))) if alone_on_cpu and config.get("share_cores") else None
        )
        torch.manual_seed(config["seed"])
        self.precision = resolve_precision(config.get("precision", "auto"), self.device)
        LOG.info(
            "precision %s (asked: %s; device %s%s)", self.precision, config.get("precision", "auto"), self.device,
            "" if self.device.type == "cuda" else f", native bf16: {cpu_has_native_bf16()}",
        )  # fmt: skip
        # The ImageNet backbone weights only when no checkpoint gives them (a lent GPU machine has
        # no package with them).
        network = TTVOSConfig(**config.get("model", {}))
        imagenet = not config.get("init_weights") or init_backbone(config["init_weights"]) != network.backbone
        self.model = TTVOS(network, pretrained_backbone=imagenet).to(self.device)
        if config.get("init_weights"):  # start from trained weights (fine-tuning, ablations, another trunk)
            self.model.load_state_dict(initial_weights(self.model, config["init_weights"]))
        if config.get("channels_last", True):  # faster on the CPU in both precisions (ttvos-bench --train)
            self.model.to(memory_format=torch.channels_last)
        check_stages(self.model, config["stages"])
        self.optimizer = adam_over_trained(self.model, config["stages"][0]["lr"])
        self.clip_runner = ClipRunner(self.model)
        self.runner = self._ranks_runner()
        self.simulated_losses: Optional[Tuple[float, float]] = None  # set per stage (_optimizer_step)
        self.step = 0
        self.average = WeightAverage(self.model) if config.get("average_half_life") else None
        data = config["data"]
        sets = training_sets(data)
        self.holdout = sets.holdout
        sampler = BatchSampler(
            sets.clips,
            sets.stills,
            data.get("davis_still_fraction", 0.3),
            config["seed"],
            self.ranks.rank,
            workers=data.get("workers", 1),
        )
        self.batches = Prefetcher(sampler, config["size"])
        self._stop_requested = False
        multi = multi_holdout(data) if self.ranks.main else []  # rank 0 scores the hold-out
        between = self.core_share.update if self.core_share is not None else None  # threads, during checks too
        self.selection = HoldoutSelection(config, self.run_dir, self.device, self.holdout, multi, between)

    def _ranks_runner(self) -> torch.nn.Module:
        """The clip runner, wrapped to average the gradients of the ranks' batches when there are several."""
        if self.ranks.world == 1:
            return self.clip_runner
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(self.clip_runner, device_ids=ids)

    def _train_backbone_blocks(self, count: int, step: int) -> None:
        """Train the backbone's last ``count`` blocks from ``step`` on (trainable.py), if it trains others."""
        if count == self.model.backbone.trainable_blocks:
            return
        self.optimizer = train_backbone_blocks(self.model, count, self.optimizer)
        if self.average is not None:
            self.average.follow(self.model)
        self.runner = self._ranks_runner()  # DDP hooks the parameters that train
        LOG.info("step %d: the backbone trains its last %d blocks", step, count)

    # --- checkpoints ---------------------------------------------------------------------------
    def _payload(self) -> Dict[str, Any]:
        averaged = {"average": self.average.weights} if self.average is not None else {}
        return checkpoint.model_payload(
            self.model,
            optimizer=self.optimizer.state_dict(),
            step=self.step,
            best_jf=self.selection.best_jf,
            best_protocol=self.selection.best_protocol,
            torch_rng=torch.get_rng_state(),
            trainable_backbone_blocks=self.model.backbone.trainable_blocks,  # what the optimizer state is of
            train_config=self.config,
            git_commit=git_commit(),
            **averaged,
        )

    def save(self) -> None:
        """Write ``last.pt`` (and the travelling copy); every rank calls it, rank 0 writes, after
        checking that the ranks' weights agree."""
        distributed.check_ranks_agree(self.model, self.ranks, self.device)
        if not self.ranks.main:
            return
        last = self.run_dir / "last.pt"
        payload = self._payload()
        if last.is_file():
            last.replace(self.run_dir / "previous.pt")
        checkpoint.save_atomic(payload, last)
        LOG.info("checkpoint at step %d -> %s", self.step, last)
        if self.travel_dir is not None:
            write_travel(self.run_dir, self.travel_dir, self.travel_reference())
            LOG.info("travelling copy -> %s", self.travel_dir)

    def travel_reference(self) -> Optional[Path]:
        """The init weights, as the repository names them (the travelling copy leaves out what
        equals them)."""
        init = self.config.get("init_weights")
        if not init:
            return None
        path = Path(init)
        return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path

    def merge(self, src: Path) -> bool:
        """Bring a travelling copy (the repository's, a GPU chunk's) into the run directory."""
        return merge_travel(src, self.run_dir, LOG_FIELDS)

    def resume(self) -> bool:
        """Load the newest readable checkpoint of the run, after merging the travelling copy
        (``travel_dir``) when it is later; False when there is none."""
        if self.ranks.main and self.travel_dir is not None and travel_step(self.travel_dir) is not None:
            self.merge(self.travel_dir)
        distributed.barrier(self.ranks)  # the other ranks read what rank 0 merged
        for name in ("last.pt", "previous.pt"):
            path = self.run_dir / name
            if not path.exists():
                continue
            try:
                payload = checkpoint.load(path)
                self.model.load_state_dict(payload["model"])
                blocks = payload.get("trainable_backbone_blocks", self.model.config.trainable_backbone_blocks)
                self._train_backbone_blocks(int(blocks), int(payload["step"]))
                self.optimizer.load_state_dict(payload["optimizer"])
            except (checkpoint.CheckpointError, KeyError, RuntimeError, ValueError) as error:
                LOG.error("cannot resume from %s: %s; trying the previous checkpoint", path, error)
                continue
            self.step = int(payload["step"])
            self.selection.best_jf = float(payload["best_jf"])
            self.selection.best_protocol = payload.get("best_protocol") or (  # before: size alone, no region
                {"internal_size": payload["best_size"], "search_region": False} if payload.get("best_size") else None
            )
            torch.set_rng_state(payload["torch_rng"])
            self._resume_average(payload.get("average"))
            self._truncate_log()
            LOG.info("resumed from %s at step %d", path, self.step)
            return True
        return False

    def _resume_average(self, saved: Optional[Dict[str, torch.Tensor]]) -> None:
        """The saved moving average; one that starts at the resumed weights when the checkpoint
        has none (averaging switched on in mid-run) or one that does not fit."""
        if self.average is None:
            return
        self.average = WeightAverage(self.model)
        if saved is None:
            LOG.info("weight averaging starts at step %d", self.step)
            return
        try:
            self.average.load(saved)
        except ValueError as error:
            LOG.warning("%s: the average starts again at step %d", error, self.step)

    def _truncate_log(self) -> None:
        """Drop log rows written after the checkpoint we resume from (that work was lost)."""
        truncate_rows(self.run_dir / "log.csv", LOG_FIELDS, self.step)

    def _log(self, row: Dict[str, Any]) -> None:
        if self.ranks.main:
            append_row(self.run_dir / "log.csv", LOG_FIELDS, row)

    # --- training ------------------------------------------------------------------------------
    def stage(self, step: int) -> Optional[Dict[str, Any]]:
        """The stage of ``step`` as this machine trains it: with ``batch_scale: k`` (a GPU takes
        larger batches) one optimizer step trains k of the stage's batches at once, so it counts as
        ``counts`` = k steps of the schedule (fewer at the stage's end): the stages keep their
        meaning (how many clips they show) whichever machine trains them."""
        stage = stage_at(self.config, step)
        if stage is not None:
            counts = min(int(self.config.get("batch_scale", 1)), stage["start"] + stage["steps"] - step)
            stage.update(batch=stage["batch"] * counts, counts=counts)
        return stage

    def train_step(self) -> Tuple[Dict[str, Any], Dict[str, float]]:
        """One optimizer step: the stage it trained and its log row. Out of GPU memory, it halves
        ``batch_scale`` and tries the step again."""
        stage = self.stage(self.step)
        try:
            return stage, self._optimizer_step(stage)
        except torch.OutOfMemoryError:
            scale = int(self.config.get("batch_scale", 1))
            if scale == 1:
                raise
            self.optimizer.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.config["batch_scale"] = scale // 2
            LOG.warning("out of memory with batch_scale %d: going on with %d", scale, scale // 2)
            return self.train_step()

    def _optimizer_step(self, stage: Dict[str, Any]) -> Dict[str, float]:
        self.model.train()
        simulated = tuple(float(stage.get(key, self.config.get(key, 0.0))) for key in ("lose_rate", "lost_threshold"))
        if simulated != self.simulated_losses:  # the run's settings, or the stage's own
            self.simulated_losses = simulated
            self.clip_runner.lose_rate, self.clip_runner.lost_threshold = simulated
            LOG.info("%s: simulated losses %.2f of (object, frame) pairs; lost below %.2f", stage["name"], *simulated)
        self._train_backbone_blocks(stage_backbone_blocks(self.model, stage), self.step)
        following = self.stage(self.step + stage["counts"])
        batch = self.batches.get(stage, self.step, following, self.step + stage["counts"])
        frames, labels, first = batch_tensors(batch, self.device)
        # Adam's square-root rule: a batch k times larger takes a learning rate sqrt(k) times larger.
        lr = learning_rate(self.config, self.step) * math.sqrt(stage["counts"])
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            outputs = self.runner(frames, first)
        losses = ttvos_losses(outputs, labels)  # float32
        weights = self.config.get("loss_weights", {})
        total = sum(weights.get(name, 1.0) * value for name, value in losses.items())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizer.step()
        if self.average is not None:
            half_life = float(stage.get("average_half_life", self.config["average_half_life"]))
            self.average.update(self.model, stage["counts"], half_life)
        self.step += stage["counts"]
        row = {**{k: v.item() for k, v in losses.items()}, "total": total.item(), "lr": lr, "objects": first.shape[1]}
        return {**row, "frames": frames.shape[0] * frames.shape[1]}  # clips x their length

    def holdout_check(self, stage: Dict[str, Any]) -> Dict[str, float]:
        """The hold-out check's log columns: the scores of the weights the run keeps (the moving
        average's, when on), and of the trained weights too with ``holdout_compare_raw``."""
        if self.average is None:
            return self.selection.log_row(self.model, "trained", stage, self.step)
        raw = stage.get("holdout_compare_raw", self.config.get("holdout_compare_raw", False))
        return self.selection.log_row(
            self.average.averaged(self.model), "average", stage, self.step, self.model if raw else None
        )

    def request_stop(self, signum, frame) -> None:
        LOG.warning("signal %d: saving a checkpoint and stopping", signum)
        self._stop_requested = True

    def run(self, max_steps: Optional[int] = None, minutes: Optional[float] = None) -> None:
        """Train to the end of the schedule, or ``max_steps`` more steps, or for ``minutes``
        (then save and return: a chunk of a run)."""
        deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
        total_steps = sum(s["steps"] for s in self.config["stages"])
        end = total_steps if max_steps is None else min(total_steps, self.step + max_steps)
        interval = 60.0 * float(self.config.get("checkpoint_minutes", 10))
        last_save = time.monotonic()
        bar = tqdm(
            total=end, initial=self.step, desc="train", unit="step", dynamic_ncols=True, disable=not self.ranks.main
        )
        while self.step < end:
            out_of_time = deadline is not None and time.monotonic() >= deadline
            if distributed.any_rank(self._stop_requested or out_of_time, self.ranks, self.device):
                break
            if self.core_share is not None:
                self.core_share.update()
            start, waited = time.perf_counter(), self.batches.wait_seconds
            stage, row = self.train_step()
            elapsed = time.perf_counter() - start
            row.update(
                step=self.step, stage=stage["name"], wall_time=round(time.time(), 1),
                frames_per_s=round(row["frames"] / elapsed, 2),
                data_wait_share=round((self.batches.wait_seconds - waited) / elapsed, 3),
            )  # fmt: skip
            # A stage may check at its own interval; holdout_every 0 for the run: never (GPU chunks).
            every = stage.get("holdout_every", self.config.get("holdout_every", 250))
            checks = self.config.get("holdout_every", 250) > 0 and every > 0
            passed = checks and self.step // every > (self.step - stage["counts"]) // every  # a multiple
            checking = checks and (passed or self.step == end)
            if checking and self.ranks.main:  # the other ranks wait at the next step's agreement
                row.update(self.holdout_check(stage))
            self._log(row)
            bar.update(stage["counts"])
            bar.set_postfix(stage=stage["name"], loss=f"{row['total']:.3f}", best_jf=f"{self.selection.best_jf:.3f}")
            if distributed.any_rank(time.monotonic() - last_save >= interval, self.ranks, self.device):
                self.save()
                last_save = time.monotonic()
        bar.close()
        self.save()
        if self.device.type == "cuda":
            LOG.info("peak GPU memory %.1f GiB", torch.cuda.max_memory_allocated(self.device) / 2**30)

    def close(self) -> None:
        self.batches.close()
        distributed.shutdown()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config/train.yaml"))
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (a chunk of the run)")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes (a GPU chunk)")
    parser.add_argument("--threads", type=int, help="override the config's torch CPU threads")
    parser.add_argument("--device", help="override the config's device (auto, cpu, cuda:N)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="override the config's precision")
    parser.add_argument("--run-dir", type=Path, help="override the config's run_dir")
    parser.add_argument("--travel-dir", type=Path, help="override the config's travel_dir (the run's travelling copy)")
    parser.add_argument("--merge", type=Path, metavar="DIR", help="merge a travelling copy (a GPU chunk's) and exit")
    parser.add_argument("--plot", type=Path, metavar="RUN_DIR", help="write RUN_DIR/curves.png and exit")
    parser.add_argument(
        "--compare-runs", type=Path, nargs="+", metavar="RUN_DIR", help="plot their hold-out curves together to --out"
    )
    parser.add_argument("--export-weights", type=Path, metavar="CHECKPOINT", help="write fp16 weights")
    parser.add_argument("--out", type=Path, help="output of --export-weights or --compare-runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.plot:
            print(plot_run(args.plot))
            return 0
        if args.compare_runs:
            if args.out is None:
                parser.error("--compare-runs needs --out")
            print(plot_runs_compared(args.compare_runs, args.out))
            return 0
        if args.export_weights:
            if args.out is None:
                parser.error("--export-weights needs --out")
            checkpoint.export_weights(args.export_weights, args.out)
            print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
            return 0
        config = load_config(args.config)
        for key in ("threads", "device", "travel_dir", "precision", "run_dir"):  # command-line overrides
            value = getattr(args, key)
            if value:
                config[key] = str(value.expanduser().resolve()) if isinstance(value, Path) else value
        trainer = Trainer(config)
        if args.merge:
            merged = trainer.merge(args.merge)
            if merged and trainer.travel_dir is not None:
                write_travel(trainer.run_dir, trainer.travel_dir, trainer.travel_reference())
            print(f"{args.merge}: {'merged into' if merged else 'not later than'} {trainer.run_dir}")
            return 0
        if args.resume and not trainer.resume():
            LOG.info("no checkpoint in %s: starting a new run", trainer.run_dir)
        elif not args.resume and (trainer.run_dir / "last.pt").exists():
            parser.error(f"{trainer.run_dir} already has a run: pass --resume or choose another run_dir")
        signal.signal(signal.SIGTERM, trainer.request_stop)
        signal.signal(signal.SIGINT, trainer.request_stop)
        try:
            trainer.run(args.max_steps, args.minutes)
        finally:
            trainer.close()
    except (ValueError, OSError, RunDirInUseError) as error:
        LOG.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
