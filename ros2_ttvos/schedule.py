"""A training run's configuration: the YAML file, its stages, the learning rate of every step,
and the numeric precision it trains in."""

import math
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import yaml


def _path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_config(path: Path) -> Dict[str, Any]:
    """Read the YAML config; paths are resolved against the current directory.

    A config with ``base: OTHER.yaml`` is that config with its own top-level keys replacing
    the base's (an experiment that starts from another run's data and settings).
    """
    with open(path) as handle:
        config = yaml.safe_load(handle)
    if "base" in config:
        with open(config.pop("base")) as handle:
            config = {**yaml.safe_load(handle), **config}
    base = Path.cwd()
    config["run_dir"] = str(_path(config["run_dir"], base))
    data = config["data"]
    for key in ("davis_root", "davis_train_list", "pack"):
        if data.get(key):
            data[key] = str(_path(data[key], base))
    data["saliency"] = [[str(_path(a, base)), str(_path(b, base))] for a, b in data.get("saliency", [])]
    for key in ("init_weights", "travel_dir", "tracker_weights"):
        if config.get(key):
            config[key] = str(_path(config[key], base))
    return config


def stage_at(config: Dict[str, Any], step: int) -> Optional[Dict[str, Any]]:
    """The stage that ``step`` (0-based) belongs to, with its first step; None after the last."""
    start = 0
    for stage in config["stages"]:
        if step < start + stage["steps"]:
            return {**stage, "start": start}
        start += stage["steps"]
    return None


def learning_rate(config: Dict[str, Any], step: int) -> float:
    """Linear warm-up at the start of each stage, then cosine decay to 10 % over the stage."""
    stage = stage_at(config, step)
    local = step - stage["start"]
    warmup = min(1.0, (local + 1) / max(1, config.get("warmup_steps", 100)))
    cosine = 0.55 + 0.45 * math.cos(math.pi * local / max(1, stage["steps"]))
    return stage["lr"] * warmup * cosine


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX or AVX-512 bf16); elsewhere it is
    emulated and about 100x slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on CUDA and on CPUs with native bf16, else fp32. bf16 is refused where it
    would be emulated."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    native = device.type == "cuda" or cpu_has_native_bf16()
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        raise ValueError("precision bf16: this CPU has no bf16 units (amx_bf16 / avx512_bf16); use fp32 or auto")
    return precision
