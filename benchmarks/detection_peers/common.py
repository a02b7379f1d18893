"""What every child run of `benchmarks/detection.py` shares: the run spec, the training
budget, the learning-rate schedule, inference timing, peak memory and result files.

Standard library only: the ultralytics child imports this module from its own virtual
environment, which has neither Keras nor TensorFlow.

The **budget** of a run is a wall-clock time and/or a number of steps (batches), whichever
ends first. The clock starts when the first training step has finished: that step holds
the graph tracing of the Keras peers (tens of seconds on two cores) and is reported apart
as ``first_step_s``; ``train_img_s`` counts the images of the later steps only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Prefix of the progress lines a child prints; the parent echoes these lines live.
LOG_PREFIX = "[bench]"


def log(message: str) -> None:
    """Prints one progress line that the parent shows on its console."""
    print(f"{LOG_PREFIX} {message}", flush=True)


@dataclasses.dataclass
class RunSpec:
    """One (peer, model, size) run, written by the parent as JSON for the child.

    Attributes:
        peer: ``"kerasseg"``, ``"keras-cv"``, ``"keras-hub"`` or ``"ultralytics"``.
        model: The peer's model name (a kerasseg zoo name, ``"yolov8_xs"``,
            ``"retinanet_resnet18"``, ``"yolov8n"``).
        size: Side of the square network input.
        budget_s: Training wall clock after the first step, in seconds (None: no limit).
        max_steps: Training steps (batches) at most (None: no limit).
        batch_size: Training batch size.
        learning_rate: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        seed: Seed of initialisation, shuffling and augmentation.
        voc_root: The VOC folder (``JPEGImages/``, ``Annotations/``, ``ImageSets/``).
        train_split: VOC split to train on.
        test_split: VOC split to score on.
        test_limit: Score only the first this many test images (None: all).
        timing_seconds: Minimum measuring time of each inference batch size.
        output: Where the child writes its result JSON.
        workdir: Scratch folder of the run.
        options: Peer-specific settings (augmentation, ultralytics' dataset, workers...).
    """

    peer: str
    model: str
    size: int
    budget_s: float | None
    max_steps: int | None
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    voc_root: str
    train_split: str
    test_split: str
    test_limit: int | None
    timing_seconds: float
    output: str
    workdir: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Writes the spec as JSON."""
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> RunSpec:
        """Reads a spec written by `save`."""
        return cls(**json.loads(Path(path).read_text()))


class BudgetClock:
    """Counts training steps and images and says when the budget is spent.

    Call `start` when training starts and `step` after every step (or `begin_step` and
    `end_step` around it, when the loop may stop between the two); `close` when training
    has ended.

    Args:
        budget_s: Seconds of training after the first step (None: unlimited).
        max_steps: Steps at most (None: unlimited). At least one of the two is needed.
    """

    def __init__(self, budget_s: float | None, max_steps: int | None):
        if budget_s is None and max_steps is None:
            raise ValueError("A budget needs seconds, steps or both.")
        self.budget_s = budget_s
        self.max_steps = max_steps
        self.steps = 0
        self.images = 0
        self.timed_images = 0
        self.first_step_s: float | None = None
        self._t_start: float | None = None
        self._t_timed: float | None = None
        self._t_last: float | None = None
        self._pending: int | None = None

    def start(self) -> None:
        """Marks the start of training."""
        self._t_start = time.perf_counter()

    @property
    def started_timing(self) -> bool:
        """True once the first step has finished (the budget clock runs)."""
        return self._t_timed is not None

    def begin_step(self, images: int) -> None:
        """A step of `images` images has started."""
        if self._t_start is None:
            self.start()
        self._pending = int(images)

    def end_step(self) -> None:
        """The step begun last has finished."""
        if self._pending is None:
            return
        now = time.perf_counter()
        self.steps += 1
        self.images += self._pending
        if self._t_timed is None:
            self.first_step_s = now - self._t_start
            self._t_timed = now
        else:
            self.timed_images += self._pending
        self._t_last = now
        self._pending = None

    def step(self, images: int) -> None:
        """A step of `images` images has finished."""
        self.begin_step(images)
        self.end_step()

    def close(self) -> None:
        """Training has ended: a step still begun counts as finished now."""
        self.end_step()

    def elapsed(self) -> float:
        """Seconds on the budget clock (0 until the first step has finished)."""
        if self._t_timed is None:
            return 0.0
        return time.perf_counter() - self._t_timed

    def progress(self) -> float:
        """Fraction of the budget spent: the larger of the time and the step fractions."""
        fractions = [0.0]
        if self.budget_s is not None:
            fractions.append(self.elapsed() / max(self.budget_s, 1e-9))
        if self.max_steps is not None:
            fractions.append(self.steps / max(self.max_steps, 1))
        return max(fractions)

    def done(self) -> bool:
        """True when the time or the steps are spent."""
        return self.progress() >= 1.0

    def summary(self) -> dict[str, Any]:
        """Steps, images, times and training throughput of the run."""
        timed = (self._t_last - self._t_timed) if self._t_timed and self._t_last else 0.0
        total = (self._t_last - self._t_start) if self._t_start and self._t_last else 0.0
        stopped_by = (
            "steps" if self.max_steps is not None and self.steps >= self.max_steps else "time"
        )
        return {
            "budget_s": self.budget_s,
            "max_steps": self.max_steps,
            "steps": self.steps,
            "images": self.images,
            "first_step_s": self.first_step_s,
            "timed_s": timed,
            "train_wall_s": total,
            "train_img_s": self.timed_images / timed if timed > 0 else None,
            "stopped_by": stopped_by,
        }


def budget_text(spec: RunSpec) -> str:
    """The budget of a run in words, e.g. ``"600s"``, ``"500 steps"``, ``"600s / 500 steps"``."""
    parts = [f"{spec.budget_s:g}s"] if spec.budget_s is not None else []
    parts += [f"{spec.max_steps} steps"] if spec.max_steps is not None else []
    return " / ".join(parts)


def warmup_cosine(
    progress: float,
    peak: float,
    warmup: float = 0.05,
    start_factor: float = 0.1,
    final_factor: float = 0.01,
) -> float:
    """The learning rate at `progress` (0..1) of the budget.

    Linear warm-up from ``start_factor * peak`` over the first `warmup` of the budget,
    then a cosine decay to ``final_factor * peak`` at its end (kerasseg's training schedule,
    indexed by the budget fraction instead of the step, since a time budget's step count is
    not known in advance).
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return peak * (start_factor + (1.0 - start_factor) * progress / warmup)
    decay = (progress - warmup) / max(1.0 - warmup, 1e-9)
    cosine = 0.5 * (1.0 + math.cos(math.pi * decay))
    return peak * (final_factor + (1.0 - final_factor) * cosine)


def time_inference(
    run_batch: Callable[[int], Any],
    batch_sizes: Sequence[int],
    min_seconds: float,
    min_iterations: int = 3,
    warmup_iterations: int = 2,
) -> dict[str, float]:
    """Images per second of ``run_batch(batch_size)`` (one inference, results on the host).

    Args:
        run_batch: Runs one forward pass + decoding on a prepared batch of that size.
        batch_sizes: The batch sizes to time.
        min_seconds: Measure each batch size for at least this long...
        min_iterations: ...and at least this many calls.
        warmup_iterations: Untimed calls first (tracing, allocator warm-up).

    Returns:
        ``{"b<size>": images per second}``.
    """
    rates = {}
    for batch_size in batch_sizes:
        for _ in range(warmup_iterations):
            run_batch(batch_size)
        calls, start = 0, time.perf_counter()
        while calls < min_iterations or time.perf_counter() - start < min_seconds:
            run_batch(batch_size)
            calls += 1
        rates[f"b{batch_size}"] = calls * batch_size / (time.perf_counter() - start)
    return rates


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process (and of its largest child process), in MiB."""
    scale = 1.0 / 1024 if sys.platform != "darwin" else 1.0 / (1024 * 1024)  # KiB vs bytes
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return {"peak_rss_mb": own, "peak_rss_children_mb": children}


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    """Writes a child's result JSON atomically (the parent never reads half a file)."""
    path = Path(path)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(result))
    os.replace(temporary, path)


def thread_settings() -> dict[str, str | None]:
    """The environment variables that set CPU thread counts (recorded in each result)."""
    names = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
    return {name: os.environ.get(name) for name in names}
