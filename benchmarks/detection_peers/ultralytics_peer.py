"""Child run of ultralytics' YOLOv8, in ultralytics' own virtual environment (PyTorch, CPU).

Run by `benchmarks/detection.py` with the ultralytics interpreter (``--ultralytics-python``)::

    .venv-ultralytics/bin/python benchmarks/detection_peers/ultralytics_peer.py --spec RUN.json

It imports neither Keras nor TensorFlow nor kerasseg, only `common`. The model is built from
its yaml (``YOLO("yolov8n.yaml")``: random initialisation, no weights download) and trained
with ultralytics' own trainer and augmentation (mosaic, HSV jitter, random affine scale and
translation, horizontal flips; plus vertical flips with ``flipud=0.5`` as the Keras peers
have) on the YOLO copy of the same training split (`yolo_format`).

Offline: ``YOLO_OFFLINE=1`` (no online checks, no analytics), ``YOLO_CONFIG_DIR`` in the
run's scratch folder (the settings file and fonts), ``amp=False`` (its AMP check downloads
yolo11n.pt), ``plots=False``, ``pretrained=False``.

The budget: ultralytics' own ``time=`` argument (hours; its learning-rate schedule is
re-fitted to the time after the first epoch) with its start reset after the first step, as
for the Keras peers, and a callback that stops at ``max_steps``. One step is one batch of 8
and one optimiser update (``nbs=8``: no gradient accumulation, as the Keras peers); AdamW
at the Keras peers' peak learning rate and weight decay, cosine schedule (``cos_lr``).
Predictions on the test images use ultralytics' predictor (its letterbox, rectangular
inference) with conf 0.001, IoU 0.7, at most 100 detections, from the final weights
(``last.pt``: ultralytics saves its EMA weights).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from benchmarks.detection_peers import common

SCORE_THRESHOLD = 0.001
IOU_THRESHOLD = 0.7
MAX_DETECTIONS = 100
#: Epochs for ultralytics' trainer: more than any budget allows (the budget stops it).
EPOCHS = 10_000


def configure_offline(workdir: Path) -> None:
    """Environment for an offline, self-contained ultralytics (before importing it)."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(workdir / "ultralytics-config"))
    os.environ.setdefault("YOLO_VERBOSE", "True")


def add_budget_callbacks(model: Any, clock: common.BudgetClock, spec: common.RunSpec) -> None:
    """Counts steps and images, aligns ultralytics' time budget with ours, stops at it."""
    state = {"index": 0, "last_log": 0.0}

    def on_train_start(trainer: Any) -> None:
        clock.start()

    def on_epoch_start(trainer: Any) -> None:
        state["index"] = 0

    def on_batch_start(trainer: Any) -> None:
        total = len(trainer.train_loader.dataset)
        batch = trainer.train_loader.batch_size
        images = min(batch, total - state["index"] * batch)
        state["index"] += 1
        clock.begin_step(images)

    def on_batch_end(trainer: Any) -> None:
        first = not clock.started_timing
        clock.end_step()
        if first:
            # ultralytics' `time=` clock starts before the first step; ours after it.
            trainer.train_time_start = time.time()
        now = time.perf_counter()
        if clock.steps == 1 or now - state["last_log"] >= 30:
            state["last_log"] = now
            loss = float(trainer.loss.detach()) if trainer.loss is not None else None
            rate = trainer.optimizer.param_groups[0]["lr"]
            common.log(
                f"step {clock.steps}: {clock.elapsed():.0f}s of {common.budget_text(spec)}, "
                f"loss {loss}, lr {rate:.2e}"
            )
        if clock.done():
            trainer.stop = True

    def on_epoch_end(trainer: Any) -> None:
        clock.close()  # a step ultralytics' own time check broke out of has finished

    model.add_callback("on_train_start", on_train_start)
    model.add_callback("on_train_epoch_start", on_epoch_start)
    model.add_callback("on_train_batch_start", on_batch_start)
    model.add_callback("on_train_batch_end", on_batch_end)
    model.add_callback("on_train_epoch_end", on_epoch_end)


def train_arguments(spec: common.RunSpec) -> dict[str, Any]:
    """The ``YOLO.train`` arguments of a run."""
    options = spec.options
    arguments = {
        "data": options["data_yaml"],
        "imgsz": spec.size,
        "epochs": EPOCHS,
        "batch": spec.batch_size,
        "nbs": spec.batch_size,
        "workers": int(options.get("workers", 0)),
        "device": "cpu",
        "optimizer": "AdamW",
        "lr0": spec.learning_rate,
        "weight_decay": spec.weight_decay,
        "cos_lr": True,
        "flipud": 0.5,
        "plots": False,
        "val": False,
        "amp": False,
        "pretrained": False,
        "seed": spec.seed,
        "deterministic": True,
        "patience": EPOCHS,
        "project": str(Path(spec.workdir) / "ultralytics-runs"),
        "name": "train",
        "exist_ok": True,
        "verbose": False,
    }
    if spec.budget_s is not None:
        arguments["time"] = spec.budget_s / 3600.0
    elif spec.max_steps is not None:
        per_epoch = math.ceil(int(options["train_images"]) / spec.batch_size)
        arguments["epochs"] = math.ceil(spec.max_steps / per_epoch)
    arguments.update(options.get("train_overrides", {}))
    return arguments


def predict_test(model: Any, spec: common.RunSpec) -> list[dict[str, Any]]:
    """Detections of the test images, in original pixels, by ultralytics' predictor."""
    images = spec.options["test_images"]
    detections = []
    for start in range(0, len(images), 8):
        chunk = images[start : start + 8]
        results = model.predict(
            source=[item["path"] for item in chunk],
            imgsz=spec.size,
            conf=SCORE_THRESHOLD,
            iou=IOU_THRESHOLD,
            max_det=MAX_DETECTIONS,
            device="cpu",
            verbose=False,
        )
        for item, result in zip(chunk, results):
            boxes = result.boxes
            detections.append(
                {
                    "image_id": item["image_id"],
                    "boxes": boxes.xyxy.cpu().numpy().tolist(),
                    "scores": boxes.conf.cpu().numpy().tolist(),
                    "classes": boxes.cls.cpu().numpy().astype(int).tolist(),
                }
            )
    return detections


def time_predictions(model: Any, spec: common.RunSpec) -> dict[str, float]:
    """Inference images/s at batch 1 and 8: the fused network + NMS on letterboxed images.

    The same work as the Keras peers' ``predict_step`` (network and decoding on images
    already letterboxed to the input size); Conv+BN are fused as ultralytics' predictor
    does.
    """
    import copy

    import cv2
    import numpy as np
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.nms import non_max_suppression

    letterbox = LetterBox((spec.size, spec.size), auto=False)
    paths = [item["path"] for item in spec.options["test_images"][:8]]
    frames = [letterbox(image=cv2.imread(path))[..., ::-1] for path in paths]
    frames = (frames * 8)[:8]
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(frames))).permute(0, 3, 1, 2)
    batch = batch.float() / 255.0
    inputs = {1: batch[:1].contiguous(), 8: batch}
    network = copy.deepcopy(model.model).float().fuse().eval()

    def run_batch(batch_size: int) -> None:
        with torch.inference_mode():
            outputs = network(inputs[batch_size])
            kept = non_max_suppression(
                outputs, SCORE_THRESHOLD, IOU_THRESHOLD, max_det=MAX_DETECTIONS
            )
            [k.numpy() for k in kept]

    return common.time_inference(run_batch, (1, 8), spec.timing_seconds)


def run(spec: common.RunSpec) -> dict[str, Any]:
    """Trains, predicts and times ultralytics' model; returns its result dict."""
    configure_offline(Path(spec.workdir))
    import torch
    import ultralytics
    from ultralytics import YOLO

    torch.manual_seed(spec.seed)
    if spec.options.get("threads"):
        torch.set_num_threads(int(spec.options["threads"]))
    started = time.perf_counter()
    model = YOLO(f"{spec.model}.yaml")
    build_s = time.perf_counter() - started
    clock = common.BudgetClock(spec.budget_s, spec.max_steps)
    add_budget_callbacks(model, clock, spec)
    arguments = train_arguments(spec)
    model.train(**arguments)
    clock.close()
    training = clock.summary()
    last = Path(model.trainer.last)
    common.log(
        f"trained {training['steps']} steps ({training['images']} images), "
        f"{training['train_img_s'] or 0:.2f} img/s; weights {last}"
    )
    trained = YOLO(str(last))
    params = int(sum(p.numel() for p in trained.model.parameters()))
    started = time.perf_counter()
    detections = predict_test(trained, spec)
    predict_s = time.perf_counter() - started
    rates = time_predictions(trained, spec)
    common.log(f"inference img/s: {rates}")
    hyp = {key: arguments.get(key) for key in ("optimizer", "lr0", "weight_decay", "nbs", "cos_lr")}
    return {
        "peer": spec.peer,
        "model": spec.model,
        "size": spec.size,
        "params": params,
        "build_s": build_s,
        "training": training,
        "inference_img_s": rates,
        "predict_test_s": predict_s,
        "decoder": {
            "score_threshold": SCORE_THRESHOLD,
            "iou_threshold": IOU_THRESHOLD,
            "max_detections": MAX_DETECTIONS,
        },
        "augmentation": {
            key: getattr(model.trainer.args, key)
            for key in (
                "mosaic",
                "close_mosaic",
                "hsv_h",
                "hsv_s",
                "hsv_v",
                "degrees",
                "translate",
                "scale",
                "fliplr",
                "flipud",
                "mixup",
            )
        },
        "optimizer": f"ultralytics {hyp}",
        "class_names": list(trained.names.values()),
        "detections": detections,
        "versions": {"torch": torch.__version__, "ultralytics": ultralytics.__version__},
        "threads": {**common.thread_settings(), "torch_threads": str(torch.get_num_threads())},
        "workers": arguments["workers"],
        **common.peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> None:
    """``--spec RUN.json``: runs it and writes the result JSON named in the spec."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the run's spec JSON (see common.RunSpec)")
    spec = common.RunSpec.load(parser.parse_args(argv).spec)
    common.write_result(spec.output, run(spec))


if __name__ == "__main__":
    main()
