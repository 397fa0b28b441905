"""Ablation of TTVOS's parts on the hold-out train sequences (``ttvos-ablate``).

    ttvos-ablate --config config/ablation.yaml [--variants full no_long_term] [--threads 1]
    ttvos-ablate --config config/ablation.yaml --test-time-only CHECKPOINT   # no training

Every variant starts from the same weights (``init_weights``), trains the same steps on the same
clips (same seed, so the same data order) with one part switched off, and is then scored on the
hold-out sequences of the base training config. Each variant is a resumable ``ttvos-train`` run
in ``RUN_DIR/<variant>``; a finished variant is not trained again. Besides the fine-tuned score,
each model variant is also scored with the part switched off at test time only (no training),
which shows what the trained full model leans on. DAVIS16 val is never touched.

Writes ``RUN_DIR/ablation.json`` and ``RUN_DIR/ablation.md`` (the table) and prints the table.
``--test-time-only CHECKPOINT`` trains nothing: it scores those weights with each variant's switch
set at test time, on the hold-out sequences and the multi-object benchmark (issue #18: does the
long-term template buy points once the training has taught it?), into
``RUN_DIR/test-time-<checkpoint name>.json`` and ``.md``.
"""

import argparse
import copy
import hashlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import yaml

from ros2_ttvos import checkpoint
from ros2_ttvos.data.davis import Davis
from ros2_ttvos.data.training_sets import multi_holdout
from ros2_ttvos.evaluate import evaluate_sequences, git_commit
from ros2_ttvos.schedule import load_config
from ros2_ttvos.tracker import Tracker
from ros2_ttvos.train import Trainer

LOG = logging.getLogger("ttvos-ablate")


def variant_config(ablation: Dict[str, Any], base: Dict[str, Any], name: str) -> Dict[str, Any]:
    """The ``ttvos-train`` config of one variant: the base config with the variant's overrides."""
    variant = ablation["variants"][name] or {}
    config = copy.deepcopy(base)
    config["run_dir"] = str(Path(ablation["run_dir"]).expanduser() / name)
    config["init_weights"] = str(Path(ablation["init_weights"]).expanduser().resolve())
    config["stages"] = [dict(ablation["stage"])]
    config["warmup_steps"] = ablation.get("warmup_steps", config.get("warmup_steps", 100))
    config["holdout_every"] = ablation["stage"]["steps"]  # score once, at the end of the budget
    config["model"] = {**config.get("model", {}), **variant.get("model", {})}
    config["loss_weights"] = {**config.get("loss_weights", {}), **variant.get("loss_weights", {})}
    return config


def final_holdout(run_dir: Path) -> Dict[str, float]:
    """Hold-out scores logged at the last step of a finished run (the budget's end, not the best)."""
    payload = checkpoint.load(run_dir / "best.pt")
    log = (run_dir / "log.csv").read_text().splitlines()
    last_step = int(log[-1].split(",", 1)[0])
    if int(payload["step"]) != last_step:
        raise ValueError(f"{run_dir}: hold-out was scored at step {payload['step']}, run ended at {last_step}")
    return payload["holdout"]


def switched_tracker(payload: Dict[str, Any], overrides: Dict[str, Any], internal_size: int) -> Tracker:
    """A tracker on the checkpoint ``payload``'s network with the variant's switches set at test time."""
    return Tracker.from_model(checkpoint.build_model(payload, overrides), "cpu", internal_size=internal_size)


def test_time_only(init_weights: Path, overrides: Dict[str, Any], sequences, internal_size: int) -> Dict[str, float]:
    """Hold-out scores of the initial weights with the variant's switches set at test time only."""
    tracker = switched_tracker(checkpoint.load(init_weights), overrides, internal_size)
    return evaluate_sequences(tracker, sequences, desc="test-time hold-out")


def test_time_report(weights: Path, ablation: Dict[str, Any], holdout, multi, internal_size: int) -> Dict[str, Any]:
    """Scores of ``weights`` as trained (``none``) and with each variant's model switch at test time."""
    switches = {"none": {"description": "nothing (the weights as trained)"}}  # the reference row
    switches.update({name: v for name, v in ablation["variants"].items() if v and v.get("model")})
    payload = checkpoint.load(weights)
    rows = {}
    for name, variant in switches.items():
        LOG.info("test-time switch %s", name)
        tracker = switched_tracker(payload, variant.get("model", {}), internal_size)
        holdout_scores = evaluate_sequences(tracker, holdout, desc=f"{name}: hold-out")
        row = {"description": variant.get("description", ""), "holdout": holdout_scores}
        if multi:
            row["multi"] = evaluate_sequences(tracker, multi, desc=f"{name}: multi-object")
        rows[name] = row
    return {"weights": str(weights), "step": payload.get("step"), "internal_size": internal_size,
            "git_commit": git_commit(), "switches": rows}  # fmt: skip


def test_time_table(report: Dict[str, Any]) -> str:
    """The test-time table: hold-out J&F and the multi-object benchmark's, each switch against none."""
    lines = [
        "| variant | switched off at test time | hold-out J&F | change | multi-object J&F | change | id switches |",
        "|---|---|---|---|---|---|---|",
    ]
    none = report["switches"]["none"]
    for name, row in report["switches"].items():
        single = 100 * row["holdout"]["JF_mean"]
        cells = [f"{single:.1f}", f"{single - 100 * none['holdout']['JF_mean']:+.1f}"]
        if "multi" in row:
            multi = 100 * row["multi"]["JF_mean"]
            switched = 100 * row["multi"]["id_switch_rate"]
            cells += [f"{multi:.1f}", f"{multi - 100 * none['multi']['JF_mean']:+.1f}", f"{switched:.1f} %"]
        else:
            cells += ["n/a", "", ""]
        lines.append(f"| {name} | {row['description']} | {' | '.join(cells)} |")
    lines.append("")
    step = f" (step {report['step']})" if report["step"] is not None else ""
    lines.append(
        f"Weights: `{report['weights']}`{step}; internal size {report['internal_size']}, search region on; no training."
    )
    return "\n".join(lines) + "\n"


def run_variant(config: Dict[str, Any]) -> Dict[str, float]:
    """Train one variant to the end of its budget (resuming when interrupted); its final scores."""
    run_dir = Path(config["run_dir"])
    budget = config["stages"][0]["steps"]
    trainer = Trainer(config)
    trainer.resume()
    if trainer.step < budget:
        signal.signal(signal.SIGTERM, trainer.request_stop)
        signal.signal(signal.SIGINT, trainer.request_stop)
        trainer.run()
        if trainer.step < budget:
            raise KeyboardInterrupt(f"stopped at step {trainer.step} of {budget}; run again to resume")
    return final_holdout(run_dir)


def markdown_table(results: Dict[str, Any]) -> str:
    """The ablation table: hold-out J&F / J / F after fine-tuning, and with the switch at test time."""
    lines = [
        "| variant | what is switched off | J&F | J | F | test-time switch only: J&F |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results["variants"].items():
        tuned, test_only = row["fine_tuned"], row.get("test_time_only")
        test_cell = f"{100 * test_only['JF_mean']:.1f}" if test_only else "n/a"
        lines.append(
            f"| {name} | {row['description']} | {100 * tuned['JF_mean']:.1f} | {100 * tuned['J_mean']:.1f} "
            f"| {100 * tuned['F_mean']:.1f} | {test_cell} |"
        )
    start = results["start"]
    lines.append("")
    lines.append(
        f"Start: `{start['init_weights']}` (sha256 {start['sha256'][:12]}, hold-out J&F "
        f"{100 * start['holdout']['JF_mean']:.1f}); budget: {results['budget']}; hold-out sequences "
        f"{', '.join(results['holdout'])} at internal size {results['internal_size']}."
    )
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ttvos-ablate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config/ablation.yaml"))
    parser.add_argument("--variants", nargs="+", help="run only these variants (default: all)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--internal-size", type=int, help="tracker processing size (default: the config's holdout_internal_size)"
    )
    parser.add_argument(
        "--test-time-only", type=Path, metavar="CHECKPOINT",
        help="train nothing: score these weights with each variant's switch at test time (hold-out and multi-object)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ablation = yaml.safe_load(args.config.read_text())
    base = load_config(Path(ablation["base"]))
    if args.threads:
        base["threads"] = args.threads
    names = args.variants or list(ablation["variants"])
    unknown = sorted(set(names) - set(ablation["variants"]))
    if unknown:
        parser.error(f"unknown variants {unknown}; the config has {list(ablation['variants'])}")
    init_weights = Path(ablation["init_weights"]).expanduser().resolve()
    internal_size = args.internal_size or base.get("holdout_internal_size", 240)
    data = base["data"]
    davis = Davis(data["davis_root"], 2016, resolution=data["resolution"], sequences=data["holdout"])
    holdout = [davis.sequence(name) for name in data["holdout"]]
    if args.test_time_only:
        if args.threads:
            torch.set_num_threads(args.threads)
        report = test_time_report(args.test_time_only, ablation, holdout, multi_holdout(data), internal_size)
        run_dir = Path(ablation["run_dir"]).expanduser()
        run_dir.mkdir(parents=True, exist_ok=True)
        stem = f"test-time-{args.test_time_only.stem}" + (f"-{internal_size}" if args.internal_size else "")
        (run_dir / f"{stem}.json").write_text(json.dumps(report, indent=2))
        table = test_time_table(report)
        (run_dir / f"{stem}.md").write_text(table)
        print(table)
        return 0
    results = {
        "budget": "{steps} steps of {batch} clips x {frames} frames at {size}, lr {lr}".format(
            **ablation["stage"], size="x".join(map(str, base["size"]))
        ),
        "holdout": base["data"]["holdout"],
        "internal_size": internal_size,
        "git_commit": git_commit(),
        "start": {
            "init_weights": str(ablation["init_weights"]),
            "sha256": hashlib.sha256(init_weights.read_bytes()).hexdigest(),
            "holdout": test_time_only(init_weights, {}, holdout, internal_size),
        },
        "variants": {},
    }
    try:
        for name in names:
            variant = ablation["variants"][name] or {}
            LOG.info("variant %s", name)
            fine_tuned = run_variant(variant_config(ablation, base, name))
            row = {"description": variant.get("description", ""), "fine_tuned": fine_tuned}
            if variant.get("model"):
                row["test_time_only"] = test_time_only(init_weights, variant["model"], holdout, internal_size)
            results["variants"][name] = row
    except (ValueError, OSError) as error:
        LOG.error("%s", error)
        return 1
    except KeyboardInterrupt as stop:
        LOG.warning("%s", stop)
        return 130
    run_dir = Path(ablation["run_dir"]).expanduser()
    (run_dir / "ablation.json").write_text(json.dumps(results, indent=2))
    table = markdown_table(results)
    (run_dir / "ablation.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
