"""Choosing a run's checkpoint on the hold-out train sequences (never on DAVIS16 val).

A check runs the tracker at the stage's ``holdout_internal_size`` (the run's when the stage sets
none), with its search region unless ``holdout_search_region: false`` (each object's state from
its whole foreground, as the tracker's default, or from its region with ``holdout_region_state:
true``, run-wide or per stage: see ``Tracker``), over the single-object hold-out sequences and,
when ``data.multi_holdout`` is set, the multi-object benchmark made from them. ``selection`` is
the mean of the two J&F (or the first alone). ``best.pt`` holds the weights with the highest
selection (the moving average's or, where a check scores both, the trained weights';
``best.json`` says which); when the protocol changes, ``best.pt`` is scored again the new way
before it is compared.
"""

import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from ros2_ttvos import checkpoint
from ros2_ttvos.evaluate import evaluate_sequences
from ros2_ttvos.main_component import GAP
from ros2_ttvos.tracker import Tracker

LOG = logging.getLogger(__name__)
# The multi-object benchmark's failure rates a check reports, each as ``multi_<rate>``.
MULTI_FAILURE_RATES = ("id_switch_rate", "lost_rate", "spilled_rate", "lost_on_return_rate")


class HoldoutSelection:
    """The run's best hold-out score, how it was measured, and ``best.pt`` / ``best.json``."""

    def __init__(
        self,
        config: Dict[str, Any],
        run_dir: Path,
        device: torch.device,
        holdout: List,
        multi: List,
        between: Optional[Callable[[], Any]] = None,
    ):
        """``between`` is called after each sequence a check tracks."""
        self.between = between
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = device
        self.holdout = holdout
        self.multi_holdout = multi
        self.best_jf = -1.0
        self.best_protocol: Optional[Dict[str, Any]] = None  # how best_jf was measured

    def protocol(self, stage: Dict[str, Any]) -> Dict[str, Any]:
        """How the check of ``stage`` runs the tracker: its internal size and search region (with
        the gap of its main-piece rule, so that a change of the rule scores ``best.pt`` again, and
        its ``region_state``; a protocol recorded without one, by an older trainer, had the state
        from the region)."""
        size = int(stage.get("holdout_internal_size", self.config.get("holdout_internal_size", 240)))
        region = bool(self.config.get("holdout_search_region", True))
        if not region:
            return {"internal_size": size, "search_region": False}
        region_state = bool(stage.get("holdout_region_state", self.config.get("holdout_region_state", False)))
        return {"internal_size": size, "search_region": True, "main_piece_gap": GAP, "region_state": region_state}

    def scores(self, model: torch.nn.Module, protocol: Dict[str, Any]) -> Dict[str, float]:
        """Hold-out J&F (single objects), the multi-object benchmark's when configured, and
        ``selection``."""
        tracker = Tracker.from_model(
            model,
            self.device,
            internal_size=protocol["internal_size"],
            search_region=protocol["search_region"],
            region_state=protocol.get("region_state", True),
        )
        scores = evaluate_sequences(tracker, self.holdout, self.between, desc="check: hold-out")
        scores["selection"] = scores["JF_mean"]
        if self.multi_holdout:
            multi = evaluate_sequences(tracker, self.multi_holdout, self.between, desc="check: multi-object")
            scores.update({f"multi_{key}": multi[key] for key in MULTI_FAILURE_RATES})
            scores["multi_JF"] = multi["JF_mean"]
            scores["selection"] = (scores["JF_mean"] + multi["JF_mean"]) / 2
        return scores

    def check(self, model: torch.nn.Module, stage: Dict[str, Any], step: int, weights: str) -> Dict[str, float]:
        """Score ``model`` (the weights the run would keep at ``step``: ``weights`` names which,
        "trained" or "average"); save it as ``best.pt`` when it beats the best so far."""
        protocol = self.protocol(stage)
        scores = self.scores(model, protocol)
        best = self.run_dir / "best.pt"
        rescore = protocol != self.best_protocol and best.is_file()
        self.best_protocol = protocol
        if rescore:
            payload = checkpoint.load(best)
            rescored = self.scores(checkpoint.build_model(payload).to(self.device), protocol)
            self.best_jf = rescored["selection"]
            self._write_best_json(payload["step"], payload.get("weights", "not recorded"), rescored)
            LOG.info("hold-out check is now %s: best.pt scored again that way: %.4f", protocol, self.best_jf)
        self.offer(model, scores, step, weights)
        return scores

    def log_row(
        self,
        model: torch.nn.Module,
        weights: str,
        stage: Dict[str, Any],
        step: int,
        trained: Optional[torch.nn.Module] = None,
    ) -> Dict[str, Any]:
        """A check's log columns: ``check`` of ``model`` (``weights`` names it) and, given the
        ``trained`` weights beside their average, their scores too (``raw_*``; best.pt may keep
        either)."""
        scores = self.check(model, stage, step, weights)
        row = {"holdout_J": scores["J_mean"], "holdout_F": scores["F_mean"], "holdout_JF": scores["JF_mean"]}
        kept_keys = ("multi_JF", *(f"multi_{rate}" for rate in MULTI_FAILURE_RATES), "selection")
        row.update({key: scores[key] for key in kept_keys if key in scores})
        if trained is not None:
            raw = self.scores(trained, self.protocol(stage))
            self.offer(trained, raw, step, "trained")
            row.update(
                raw_holdout_JF=raw["JF_mean"], raw_multi_JF=raw.get("multi_JF", ""), raw_selection=raw["selection"]
            )
        return row

    def offer(self, model: torch.nn.Module, scores: Dict[str, float], step: int, weights: str) -> None:
        """Keep ``model`` as ``best.pt`` when its ``scores``, measured by this check's protocol,
        beat the best so far (a second candidate of the same check: the trained weights beside
        their average). With ``holdout_keep_checked`` every candidate is kept as well, in float16
        as shipped weights are, in ``checked/STEP-WEIGHTS.pt``: shipping has a rule of its own
        (docs/training.md) that the best selection alone may not meet."""
        if self.config.get("holdout_keep_checked", False):
            kept = checkpoint.model_payload(model, half=True, step=step, weights=weights, holdout=scores)
            try:
                checkpoint.save_atomic(kept, self.run_dir / "checked" / f"{step}-{weights}.pt")
            except OSError as error:  # a full disk: the run goes on without this copy
                LOG.warning("cannot keep the checked weights of step %d (%s): %s", step, weights, error)
        if scores["selection"] > self.best_jf:
            self.best_jf = scores["selection"]
            payload = checkpoint.model_payload(
                model, step=step, weights=weights, holdout=scores, train_config=self.config
            )
            checkpoint.save_atomic(payload, self.run_dir / "best.pt")
            self._write_best_json(step, weights, scores)

    def _write_best_json(self, step: int, weights: str, scores: Dict[str, float]) -> None:
        record = {"step": step, "weights": weights, **self.best_protocol, **scores}
        (self.run_dir / "best.json").write_text(json.dumps(record, indent=2))
