"""Detection on BCCD against keras-cv, ultralytics and keras-hub, every peer in the same run.

Every detector is trained from scratch on BCCD's ``train`` split (205 images, 3 classes)
at the same square input size, batch 8, with the same budget (wall clock and/or steps,
whichever ends first, both reported), then scored on the ``test`` split (72 images) with
kerasseg's evaluator (``kerasseg.metrics.detection.evaluator.evaluate``, equal to
pycocotools) on boxes in original image pixels. Each (peer, model, size) run is its own
child process, one after the other, so that peak memory is per run and a crash is a row of
the table, not the end of the benchmark.

Runs (``--runs``, default all):

- ``kerasseg:yolov8_n``, ``kerasseg:yolov8_xs``, ``kerasseg:yolov2_cspdarknet_n``, ``kerasseg:ssd_resnet18``,
  ``kerasseg:retinanet_resnet18``: kerasseg's zoo detectors (``weights=None``); the four
  of the lecture table.
- ``keras-cv:yolov8_xs``: keras-cv 0.9 ``YOLOV8Detector`` on the ``yolo_v8_xs_backbone``
  architecture (built from the preset's arguments: ``from_preset`` fetches its config from
  Kaggle even with ``load_weights=False``), ``fpn_depth=1``.
- ``ultralytics:yolov8n``: ultralytics ``YOLO("yolov8n.yaml")`` with its own trainer.
- ``keras-hub:retinanet_resnet18``: keras-hub ``RetinaNetObjectDetector`` on a ResNet-18
  (basic blocks), P3-P7, from its classes (no preset, no weights).

Measured per run: parameters; training steps, images, images/s (after the first step,
which holds the graph tracing and is reported apart); inference images/s at batch 1 and 8
(forward pass + decoding/NMS on letterboxed images); COCO AP, AP50, AP75 and VOC07 mAP on
the test split; peak RSS of the child (``resource.getrusage``). The tables give ratios
of each kerasseg run to keras-cv, ultralytics and keras-hub at the same size ("AP vs
keras-cv: 1.25x"), and a "lecture" table (VOC07 mAP, COCO AP50, FPS) of kerasseg's four
detectors.

What each peer gets (see the child modules for the details):

- Keras peers (`detection_peers/keras_peers.py`): kerasseg's input pipeline, letterboxed
  to the size, then ``detection_augmentation`` (random scale 0.75-1.25 + crop, horizontal
  and vertical flips, colour jitter, a 4-image mosaic for half of the images); AdamW (peak ``--lr``,
  weight decay ``--weight-decay``, gradient norm clipped at 10) with a warm-up + cosine
  schedule over the budget; predictions at score >= 0.001, at most 100 per image (NMS
  IoU: the family's default for kerasseg, 0.7 for keras-cv, 0.5 for keras-hub).
- ultralytics (`detection_peers/ultralytics_peer.py`, its own venv): its own trainer
  and augmentation (mosaic, HSV, random affine, flips; vertical flips added), AdamW at
  the same peak rate and weight decay, one optimiser step per batch of 8 (``nbs=8``),
  cosine schedule fitted to ``time=``; EMA weights; its predictor (conf 0.001, IoU 0.7,
  at most 100).

Set-up (once, from the repository root)::

    pip install -c constraints.txt -e ".[bench]"   # keras-cv 0.9 (and the mAP peers)
    pip install --no-deps "keras-hub==0.32.0" && pip install tokenizers sentencepiece
                                                   # optional: keras-hub's RetinaNet
                                                   # (--no-deps: its tensorflow-text
                                                   # dependency would install a second
                                                   # TensorFlow over tensorflow-cpu)
    make bench-env                                 # .venv-ultralytics with ultralytics

The ultralytics interpreter is ``--ultralytics-python``, else
``$KERASSEG_ULTRALYTICS_PYTHON``, else ``.venv-ultralytics/bin/python``; a peer that is
not installed is reported as skipped, with the reason. Nothing is downloaded: every model
is built from its architecture, ultralytics runs with ``YOLO_OFFLINE=1``.

Run from the repository root (2 sizes x 7 runs x (10 minutes + 1-3 minutes of building,
tracing, prediction and timing): about three hours on two cores; ``--quick``: about 15
minutes)::

    python benchmarks/detection.py --json detection.json      # --sizes 320 416, 10 min
    python benchmarks/detection.py --quick                     # smoke test: 320, 1 min
    python benchmarks/detection.py --runs kerasseg:yolov8_n ultralytics:yolov8n \\
        --sizes 320 --minutes 5 --steps 500
    python benchmarks/detection.py --merge a.json b.json       # tables of earlier runs

Caveats: the peers do not see identical augmentation (ultralytics keeps its own: mosaic
always, closed for its last 10 epochs, HSV jitter, random affine scale 0.5 and translate
0.1, flips); ultralytics predicts with its EMA weights and its own letterbox (padding 114,
rectangular inference), the Keras peers without EMA on kerasseg's letterbox (padding 0);
its inference timing fuses Conv+BN, as its predictor does. ``peak_rss_children_mb`` in the
JSON is only meaningful for ultralytics with ``--ultralytics-workers`` > 0 (on Linux a
forked helper process inherits its parent's resident size).

Threads: every child gets ``--threads`` CPU threads (default: all cores) through
``OMP_NUM_THREADS`` / ``TF_NUM_INTRAOP_THREADS`` / ``torch.set_num_threads`` (ultralytics
alone would pick one thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.detection_peers import common  # noqa: E402

PEERS_DIR = ROOT / "benchmarks" / "detection_peers"
DEFAULT_VOC = ROOT.parent / "shared" / "data" / "bccd" / "BCCD"
ULTRALYTICS_ENV = "KERASSEG_ULTRALYTICS_PYTHON"
DEFAULT_ULTRALYTICS_PYTHON = ROOT / ".venv-ultralytics" / "bin" / "python"


@dataclasses.dataclass(frozen=True)
class Run:
    """One benchmarked detector: the peer library and its model name."""

    peer: str
    model: str
    description: str

    @property
    def name(self) -> str:
        return f"{self.peer}:{self.model}"


RUNS = {
    run.name: run
    for run in (
        Run("kerasseg", "yolov8_n", "kerasseg YOLOv8-n"),
        Run("kerasseg", "yolov8_xs", "kerasseg YOLOv8-xs (keras-cv's xs layout)"),
        Run("kerasseg", "yolov2_cspdarknet_n", "kerasseg YOLOv2, CSP-Darknet-n"),
        Run("kerasseg", "ssd_resnet18", "kerasseg SSD, ResNet-18"),
        Run("kerasseg", "retinanet_resnet18", "kerasseg RetinaNet, ResNet-18"),
        Run("keras-cv", "yolov8_xs", "keras-cv 0.9 YOLOV8Detector, xs backbone"),
        Run("ultralytics", "yolov8n", "ultralytics YOLOv8n (yolov8n.yaml)"),
        Run("keras-hub", "retinanet_resnet18", "keras-hub RetinaNet, ResNet-18"),
    )
}
#: The peers that kerasseg's runs are compared with in the ratio tables, each with the
#: kerasseg models it is compared to (None: all of them).
REFERENCES: dict[str, tuple[str, ...] | None] = {
    "keras-cv:yolov8_xs": None,
    "ultralytics:yolov8n": None,
    "keras-hub:retinanet_resnet18": ("retinanet_resnet18",),
}
#: kerasseg's runs of the lecture table.
LECTURE = (
    "kerasseg:yolov2_cspdarknet_n",
    "kerasseg:yolov8_n",
    "kerasseg:ssd_resnet18",
    "kerasseg:retinanet_resnet18",
)
#: --quick: the settings of a smoke test (options given explicitly win).
QUICK = {"sizes": [320], "minutes": 1.0, "test_limit": 16, "timing_seconds": 1.0}
FULL = {"sizes": [320, 416], "minutes": 10.0, "test_limit": None, "timing_seconds": 10.0}


# -------------------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=sorted(RUNS),
        default=list(RUNS),
        metavar="PEER:MODEL",
        help="runs (default: all): " + ", ".join(RUNS),
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=None, help="input sizes (320 416)")
    parser.add_argument(
        "--minutes", type=float, default=None, help="training wall clock per run (10)"
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps per run at most")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: size 320, 1 minute, 16 test images"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="CPU threads per run"
    )
    parser.add_argument("--voc", default=str(DEFAULT_VOC), help="BCCD's VOC folder")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-split", default="test")
    parser.add_argument(
        "--test-limit", type=int, default=None, help="score the first N test images"
    )
    parser.add_argument(
        "--timing-seconds", type=float, default=None, help="per inference batch size (10)"
    )
    parser.add_argument(
        "--ultralytics-python", default=None, help=f"ultralytics' interpreter (${ULTRALYTICS_ENV})"
    )
    parser.add_argument(
        "--ultralytics-workers", type=int, default=0, help="its dataloader workers (0: in process)"
    )
    parser.add_argument(
        "--child-timeout", type=float, default=1800.0, help="seconds beyond the budget"
    )
    parser.add_argument(
        "--workdir", default=None, help="logs, specs, results (default: a new temp folder)"
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write every row as JSON")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="print the tables of earlier --json files",
    )
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def ultralytics_python(args: argparse.Namespace) -> Path:
    """The ultralytics interpreter: the option, else the environment variable, else the repo's."""
    chosen = (
        args.ultralytics_python or os.environ.get(ULTRALYTICS_ENV) or DEFAULT_ULTRALYTICS_PYTHON
    )
    return Path(chosen)


# ---------------------------------------------------------------------- availability


def _ultralytics_available(python: Path) -> str | None:
    if not python.exists():
        return (
            f"no ultralytics interpreter at {python} (run `make bench-env`, or pass "
            f"--ultralytics-python / set {ULTRALYTICS_ENV})"
        )
    check = subprocess.run(
        [str(python), "-c", "import ultralytics, torch"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        return f"ultralytics does not import in {python}: {last}"
    return None


def skip_reason(run: Run, args: argparse.Namespace, cache: dict[str, str | None]) -> str | None:
    """Why `run` cannot run here (a peer not installed), or None."""
    if run.peer not in cache:
        if run.peer == "keras-cv":
            missing = importlib.util.find_spec("keras_cv") is None
            cache[run.peer] = (
                "keras-cv not installed (pip install -e '.[bench]')" if missing else None
            )
        elif run.peer == "keras-hub":
            missing = importlib.util.find_spec("keras_hub") is None
            cache[run.peer] = (
                "keras-hub not installed (pip install --no-deps keras-hub; see the docstring)"
                if missing
                else None
            )
        elif run.peer == "ultralytics":
            cache[run.peer] = _ultralytics_available(ultralytics_python(args))
        else:
            cache[run.peer] = None
    return cache[run.peer]


# ------------------------------------------------------------------------------ data


def load_data(args: argparse.Namespace) -> tuple[Any, Any]:
    """BCCD's train split and the scored (possibly limited) test split."""
    from kerasseg.data import load_voc

    train = load_voc(args.voc, args.train_split)
    test = load_voc(args.voc, args.test_split, class_names=train.class_names)
    if args.test_limit:
        test.records = test.records[: args.test_limit]
    return train, test


def ultralytics_options(train: Any, test: Any, workdir: Path, args: argparse.Namespace) -> dict:
    """The ultralytics child's options: its YOLO copy of the train split, the test images."""
    from benchmarks.detection_peers.yolo_format import write_yolo_dataset

    yaml = write_yolo_dataset(train.records, train.class_names, workdir / "yolo-bccd")
    return {
        "data_yaml": str(yaml),
        "train_images": len(train),
        "workers": args.ultralytics_workers,
        "threads": args.threads,
        "test_images": [
            {
                "image_id": str(r.image_id),
                "path": r.image_path,
                "height": r.height,
                "width": r.width,
            }
            for r in test.records
        ],
    }


# -------------------------------------------------------------------------- children


def make_spec(
    run: Run, size: int, args: argparse.Namespace, workdir: Path, options: dict
) -> common.RunSpec:
    """The spec of one child run."""
    stem = f"{run.peer}-{run.model}-{size}"
    return common.RunSpec(
        peer=run.peer,
        model=run.model,
        size=size,
        budget_s=args.minutes * 60.0 if args.minutes and args.minutes > 0 else None,
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        voc_root=str(args.voc),
        train_split=args.train_split,
        test_split=args.test_split,
        test_limit=args.test_limit,
        timing_seconds=args.timing_seconds,
        output=str(workdir / f"{stem}.result.json"),
        workdir=str(workdir / stem),
        options=options,
    )


def child_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment of every child: the thread count, quiet TensorFlow, offline YOLO."""
    env = dict(os.environ)
    threads = str(args.threads)
    env.update(
        OMP_NUM_THREADS=threads,
        TF_NUM_INTRAOP_THREADS=threads,
        TF_CPP_MIN_LOG_LEVEL="2",
        YOLO_OFFLINE="1",
        PYTHONHASHSEED=str(args.seed),
    )
    return env


def launch(
    command: list[str], log_path: Path, timeout: float, env: dict[str, str]
) -> tuple[int | None, float]:
    """Runs a child, its output into `log_path`, echoing its progress lines; kills it after
    `timeout` seconds.

    Returns:
        ``(exit code or None on timeout, seconds)``.
    """
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
        )

        def copy_output() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                log_file.write(line)
                if common.LOG_PREFIX in line:  # after a progress bar's \r, maybe
                    print("   ", line[line.index(common.LOG_PREFIX) :].rstrip(), flush=True)

        reader = threading.Thread(target=copy_output, daemon=True)
        reader.start()
        try:
            code: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        reader.join(timeout=10)
    return code, time.perf_counter() - started


def failure_reason(code: int | None, log_path: Path) -> str:
    """A one-line reason from a failed child's log (its last exception line)."""
    if code is None:
        return "timed out"
    lines = [
        line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()
    ]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    last = (errors or lines or ["no output"])[-1]
    return f"exit {code}: {last[:160]}"


def run_child(
    run: Run, spec: common.RunSpec, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Runs one child; returns its result dict, or ``{"status": "failed: ..."}``."""
    Path(spec.workdir).mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"{Path(spec.output).name.replace('.result.json', '')}.spec.json"
    spec.save(spec_path)
    if run.peer == "ultralytics":
        command = [str(ultralytics_python(args)), str(PEERS_DIR / "ultralytics_peer.py")]
    else:
        command = [sys.executable, str(PEERS_DIR / "keras_peers.py")]
    command += ["--spec", str(spec_path)]
    log_path = workdir / spec_path.name.replace(".spec.json", ".log")
    timeout = (spec.budget_s or 0) + args.child_timeout
    code, seconds = launch(command, log_path, timeout, child_environment(args))
    if code == 0 and Path(spec.output).exists():
        result = json.loads(Path(spec.output).read_text())
        result.update(status="ok", child_s=seconds, log=str(log_path))
        return result
    print(f"    failed; last lines of {log_path}:")
    for line in log_path.read_text(errors="replace").splitlines()[-12:]:
        print("    |", line[:200])
    return {
        "status": f"failed ({failure_reason(code, log_path)})",
        "child_s": seconds,
        "log": str(log_path),
    }


# --------------------------------------------------------------------------- scoring


def score(result: dict[str, Any], test: Any) -> dict[str, float]:
    """COCO AP / AP50 / AP75 and VOC07 mAP of a child's detections on the test records."""
    from kerasseg.metrics.detection.evaluator import evaluate

    by_id = {str(d["image_id"]): d for d in result["detections"]}
    detections = []
    for record in test.records:
        found = by_id.get(str(record.image_id), {"boxes": [], "scores": [], "classes": []})
        detections.append(
            {
                "boxes": np.asarray(found["boxes"], np.float32).reshape(-1, 4),
                "scores": np.asarray(found["scores"], np.float32),
                "classes": np.asarray(found["classes"], np.int64),
            }
        )
    ground_truth = test.ground_truth()
    num_classes = len(test.class_names)
    names = test.class_names
    coco = evaluate(
        ground_truth, detections, "coco", num_classes=num_classes, class_names=names, progress=False
    )
    voc07 = evaluate(
        ground_truth,
        detections,
        "voc07",
        num_classes=num_classes,
        class_names=names,
        progress=False,
    )
    return {
        "ap": float(coco.summary["map"]),
        "ap50": float(coco.summary["map50"]),
        "ap75": float(coco.summary["map75"]),
        "voc07_map": float(voc07.map),
        "ap_per_class": {k: float(v) for k, v in coco.per_class_ap_by_name.items()},
    }


def make_row(run: Run, size: int, result: dict[str, Any], test: Any | None) -> dict[str, Any]:
    """One flat table row of a run (scored when it succeeded)."""
    row: dict[str, Any] = {
        "run": run.name,
        "peer": run.peer,
        "model": run.model,
        "description": run.description,
        "size": size,
        "status": result.get("status", "ok"),
    }
    if row["status"] != "ok":
        row.update({k: result[k] for k in ("child_s", "log") if k in result})
        return row
    training = result["training"]
    rates = result["inference_img_s"]
    row.update(
        params=result["params"],
        steps=training["steps"],
        images=training["images"],
        budget_s=training["budget_s"],
        max_steps=training["max_steps"],
        timed_s=training["timed_s"],
        first_step_s=training["first_step_s"],
        train_wall_s=training["train_wall_s"],
        stopped_by=training["stopped_by"],
        train_img_s=training["train_img_s"],
        infer_b1_img_s=rates.get("b1"),
        infer_b8_img_s=rates.get("b8"),
        peak_rss_mb=result["peak_rss_mb"],
        peak_rss_children_mb=result.get("peak_rss_children_mb"),
        test_images=len(test.records) if test is not None else None,
        decoder=result.get("decoder"),
        augmentation=result.get("augmentation"),
        optimizer=result.get("optimizer"),
        versions=result.get("versions"),
        threads=result.get("threads"),
        child_s=result.get("child_s"),
        log=result.get("log"),
    )
    if test is not None:
        row.update(score(result, test))
    return row


# ---------------------------------------------------------------------------- tables


def _number(value: Any, digits: int = 1, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value * scale:,.{digits}f}"


def _ratio(ours: Any, theirs: Any) -> str:
    if ours is None or theirs is None or not theirs or not np.isfinite(theirs):
        return "n/a"
    return f"{ours / theirs:.2f}x"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table with padded columns."""
    rows = [list(map(str, row)) for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def results_table(rows: Sequence[dict[str, Any]]) -> str:
    """Every run: budget, throughput, accuracy, memory (or why it did not run)."""
    headers = [
        "run", "size", "params (M)", "steps", "images", "train s", "1st step s", "train img/s",
        "infer img/s b1", "infer img/s b8", "AP", "AP50", "VOC07 mAP", "peak RSS MiB", "status",
    ]  # fmt: skip
    body = []
    for r in rows:
        ok = r["status"] == "ok"
        body.append(
            [
                r["run"],
                r["size"],
                _number(r.get("params"), 2, 1e-6) if ok else "-",
                r.get("steps", "-"),
                r.get("images", "-"),
                _number(r.get("timed_s"), 0),
                _number(r.get("first_step_s"), 1),
                _number(r.get("train_img_s"), 2),
                _number(r.get("infer_b1_img_s"), 1),
                _number(r.get("infer_b8_img_s"), 1),
                _number(r.get("ap"), 1, 100),
                _number(r.get("ap50"), 1, 100),
                _number(r.get("voc07_map"), 1, 100),
                _number(r.get("peak_rss_mb"), 0),
                r["status"],
            ]
        )
    return format_table(headers, body)


RATIO_METRICS = (
    ("AP", "ap"),
    ("AP50", "ap50"),
    ("train img/s", "train_img_s"),
    ("infer b1", "infer_b1_img_s"),
    ("infer b8", "infer_b8_img_s"),
    ("params", "params"),
    ("peak RSS", "peak_rss_mb"),
)


def _ok(rows: Sequence[dict[str, Any]], name: str, size: int) -> dict[str, Any] | None:
    return next(
        (r for r in rows if r["run"] == name and r["size"] == size and r["status"] == "ok"), None
    )


def _references(ours: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[tuple[str, dict]]:
    """The successful reference rows that a kerasseg row is compared with."""
    pairs = []
    for name, models in REFERENCES.items():
        theirs = _ok(rows, name, ours["size"])
        if theirs is not None and (models is None or ours["model"] in models):
            pairs.append((name, theirs))
    return pairs


def ratio_table(rows: Sequence[dict[str, Any]]) -> str:
    """kerasseg / reference for every kerasseg run and every reference at the same size."""
    body = []
    for ours in rows:
        if ours["peer"] != "kerasseg" or ours["status"] != "ok":
            continue
        for name, theirs in _references(ours, rows):
            body.append(
                [ours["model"], ours["size"], f"vs {name}"]
                + [_ratio(ours.get(key), theirs.get(key)) for _, key in RATIO_METRICS]
            )
    headers = ["kerasseg", "size", "reference"] + [label for label, _ in RATIO_METRICS]
    return (
        format_table(headers, body) if body else "(no kerasseg run and reference at the same size)"
    )


def headline(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One sentence per kerasseg run: "AP vs keras-cv: 1.25x, vs ultralytics: 0.80x"."""
    lines = []
    for ours in rows:
        if ours["peer"] != "kerasseg" or ours["status"] != "ok":
            continue
        parts = []
        for name, theirs in _references(ours, rows):
            peer = name.split(":")[0]
            parts.append(
                f"AP vs {peer}: {_ratio(ours.get('ap'), theirs.get('ap'))}, "
                f"train img/s vs {peer}: {_ratio(ours.get('train_img_s'), theirs.get('train_img_s'))}"
            )
        if parts:
            lines.append(f"{ours['model']} @{ours['size']}: " + "; ".join(parts))
    return lines


def lecture_table(rows: Sequence[dict[str, Any]]) -> str:
    """kerasseg's four detectors at the same budget: VOC07 mAP, COCO AP50, FPS."""
    body = [
        [
            r["model"],
            r["size"],
            _number(r.get("voc07_map"), 1, 100),
            _number(r.get("ap50"), 1, 100),
            _number(r.get("ap"), 1, 100),
            _number(r.get("infer_b1_img_s"), 1),
            _number(r.get("infer_b8_img_s"), 1),
            r.get("steps", "-"),
            _number(r.get("params"), 2, 1e-6),
        ]
        for name in LECTURE
        for r in rows
        if r["run"] == name and r["status"] == "ok"
    ]
    headers = [
        "model",
        "size",
        "VOC07 mAP",
        "COCO AP50",
        "COCO AP",
        "FPS b1",
        "FPS b8",
        "steps",
        "params (M)",
    ]
    return format_table(headers, body) if body else "(no lecture run succeeded)"


def print_report(rows: Sequence[dict[str, Any]], settings: dict[str, Any]) -> None:
    """All tables."""
    budget = settings.get("budget")
    print(
        f"\nBCCD detection, budget {budget}, AP in % on {settings.get('test_images')} test images\n"
    )
    print(results_table(rows))
    print("\nRatios (kerasseg / reference, same size; > 1: kerasseg higher)\n")
    print(ratio_table(rows))
    for line in headline(rows):
        print("  " + line)
    print("\nLecture table (kerasseg, same budget)\n")
    print(lecture_table(rows))


# ------------------------------------------------------------------------------ main


def environment() -> dict[str, Any]:
    """Machine and interpreter facts of the run."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor(),
    }


def write_json(path: str | Path, rows: Sequence[dict[str, Any]], settings: dict[str, Any]) -> None:
    """Writes every row (without detections) and the settings as JSON."""
    Path(path).write_text(json.dumps({"settings": settings, "rows": list(rows)}, indent=1))
    print(f"\nRows written to {path}")


def merge(paths: Sequence[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and settings of earlier --json files (later files' rows replace earlier ones)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    settings: dict[str, Any] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        settings = data.get("settings", settings)
        for row in data["rows"]:
            rows[(row["run"], row["size"])] = row
    order = list(RUNS)
    ranked = sorted(
        rows.values(), key=lambda r: (r["size"], order.index(r["run"]) if r["run"] in order else 99)
    )
    return ranked, settings


def benchmark(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Runs every selected (run, size), one child at a time; returns the rows and settings."""
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kerasseg-bench-detection-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"Work folder (specs, logs, results): {workdir}")
    train, test = load_data(args)
    budget = []
    if args.minutes and args.minutes > 0:
        budget.append(f"{args.minutes:g} min")
    if args.steps:
        budget.append(f"{args.steps} steps")
    settings = {
        "budget": " / ".join(budget) or "none",
        "minutes": args.minutes,
        "steps": args.steps,
        "sizes": args.sizes,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "threads": args.threads,
        "train_images": len(train),
        "test_images": len(test),
        "voc": str(args.voc),
        "environment": environment(),
        "workdir": str(workdir),
    }
    cache: dict[str, str | None] = {}
    runs = [RUNS[name] for name in args.runs]
    options = {}
    if (
        any(r.peer == "ultralytics" for r in runs)
        and skip_reason(RUNS["ultralytics:yolov8n"], args, cache) is None
    ):
        options["ultralytics"] = ultralytics_options(train, test, workdir, args)
    rows = []
    for size in args.sizes:
        for run in runs:
            reason = skip_reason(run, args, cache)
            print(f"\n== {run.name} @ {size}", f"(skipped: {reason})" if reason else "", flush=True)
            if reason:
                rows.append(make_row(run, size, {"status": f"skipped: {reason}"}, None))
                continue
            spec = make_spec(run, size, args, workdir, options.get(run.peer, {}))
            result = run_child(run, spec, args, workdir)
            try:
                rows.append(make_row(run, size, result, test))
            except Exception as error:  # a malformed result is a failed run, not the end
                rows.append(make_row(run, size, {"status": f"failed (scoring: {error})"}, None))
            if args.json:  # partial results survive an interrupted benchmark
                Path(args.json).write_text(
                    json.dumps({"settings": settings, "rows": rows}, indent=1)
                )
    return rows, settings


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the benchmark (or merges earlier results) and prints the tables."""
    args = parse_args(argv)
    if args.merge:
        rows, settings = merge(args.merge)
    else:
        rows, settings = benchmark(args)
    print_report(rows, settings)
    if args.json:
        write_json(args.json, rows, settings)


if __name__ == "__main__":
    main()
