"""Training and inference throughput of U-Net-ResNet34 and FPN-ResNet34 against the peers.

Compares, in one run, at 256x256, batch 8, on synthetic data:

* kerasseg ``unet_resnet34`` / ``fpn_resnet34`` (float32, and with ``--bf16`` also the
  ``mixed_bfloat16`` policy); for inference also the model after
  ``kerasseg.layers.fold_batch_norm`` ("folded"; what ``kerasseg predict`` runs). It is folded
  and saved once in a process of its own and the measured runs load the saved file, as a
  deployment would (so the peak RSS is that of serving, not of holding two copies),
* qubvel's ``segmentation_models`` (Keras, ``SM_FRAMEWORK=tf.keras``) ``Unet`` / ``FPN``,
* ``segmentation_models_pytorch`` ``Unet`` / ``FPN`` (channels_last, 2 threads).

Every configuration runs in its own subprocess (so peak RSS is its own and TensorFlow and
PyTorch never share a process), alternating over ``--repeats`` rounds so that drifting load
on the machine affects all alike; the table shows the best round. Training is Adam + binary
cross-entropy; inference is a forward pass in inference mode. GFLOP/s uses the FLOPs of the
smp model (measured with ``torch.utils.flop_counter``; kerasseg's models are the same
architectures, parameter for parameter).

With ``--accuracy`` it also trains ``unet`` (16 filters) and ``fpn_resnet34`` briefly on the
ISBI membranes in float32 and in mixed_bfloat16 and reports the validation Dice of both.

    python benchmarks/segmentation_throughput.py [--steps 10] [--repeats 2] [--bf16] [--accuracy]

Needs the ``bench`` and ``parity`` extras. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SIZE, BATCH = 256, 8
MODELS = ("unet", "fpn")


def _cpu_and_rss() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _measure(run, steps: int) -> dict:
    """Images per second, CPU time per image and peak RSS of `steps` calls of `run`."""
    cpu0, _ = _cpu_and_rss()
    started = time.perf_counter()
    for _ in range(steps):
        run()
    seconds = time.perf_counter() - started
    cpu1, rss = _cpu_and_rss()
    return {
        "img_per_s": steps * BATCH / seconds,
        "cpu_ms_per_img": 1000 * (cpu1 - cpu0) / (steps * BATCH),
        "peak_rss_mib": rss,
    }


def _keras_model(framework: str, arch: str):
    if framework == "sm":
        os.environ["SM_FRAMEWORK"] = "tf.keras"
        import segmentation_models as sm

        build = sm.Unet if arch == "unet" else sm.FPN
        return build(
            "resnet34",
            encoder_weights=None,
            classes=1,
            activation="sigmoid",
            input_shape=(SIZE, SIZE, 3),
        )
    import kerasseg

    return kerasseg.zoo.get(
        f"{arch}_resnet34", weights=None, num_classes=1, input_shape=(SIZE, SIZE, 3)
    )


def save_folded(arch: str, path: str) -> dict:
    """Writes the batch-norm-folded kerasseg model to `path`, as one would deploy it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import kerasseg

    keras.utils.set_random_seed(0)
    kerasseg.layers.fold_batch_norm(_keras_model("kerasseg", arch)).save(path)
    return {"path": path}


def run_keras(
    framework: str, arch: str, mode: str, steps: int, policy: str, model_file: str = ""
) -> dict:
    """One configuration; `model_file`: a saved model to load instead of building one."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    if model_file:
        import kerasseg  # noqa: F401  (registers kerasseg's layers for load_model)

        model = keras.models.load_model(model_file)
    else:
        model = _keras_model(framework, arch)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype("float32")
    masks = (rng.uniform(size=(BATCH, SIZE, SIZE, 1)) > 0.7).astype("float32")
    if mode == "train":
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.train_on_batch(images, masks)  # trace and warm up
        model.train_on_batch(images, masks)
        run = lambda: model.train_on_batch(images, masks)  # noqa: E731
    else:
        infer = tf.function(lambda x: model(x, training=False))
        infer(images)
        infer(images)
        run = lambda: infer(images).numpy()  # noqa: E731
    return _measure(run, steps)


def _smp_model(arch: str):
    import segmentation_models_pytorch as smp

    build = smp.Unet if arch == "unet" else smp.FPN
    return build("resnet34", encoder_weights=None, classes=1)


def run_smp(arch: str, mode: str, steps: int) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = _smp_model(arch).to(memory_format=torch.channels_last)
    images = torch.rand(BATCH, 3, SIZE, SIZE).to(memory_format=torch.channels_last)
    masks = (torch.rand(BATCH, 1, SIZE, SIZE) > 0.7).float()
    if mode == "train":
        model.train()
        optimizer = torch.optim.Adam(model.parameters())
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def run():
            optimizer.zero_grad()
            loss_fn(model(images), masks).backward()
            optimizer.step()
    else:
        model.eval()

        def run():
            with torch.inference_mode():
                model(images)

    run()
    run()
    return _measure(run, steps)


def smp_flops(arch: str) -> dict:
    """FLOPs per image of one training step (forward + backward) and of inference."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = _smp_model(arch)
    images = torch.rand(1, 3, SIZE, SIZE)
    counter = FlopCounterMode(display=False)
    with counter:
        model(images).sum().backward()
    train = counter.get_total_flops()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()
        model(images)
    return {"train_gflop": train / 1e9, "infer_gflop": counter.get_total_flops() / 1e9}


ACCURACY_RUNS = {
    # model: (builder overrides, epochs, steps per epoch, learning rate)
    "unet": ({"filters": 16}, 8, 25, 2e-3),
    "fpn_resnet34": ({}, 4, 25, 3e-4),
}


def isbi_accuracy(model: str, policy: str) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tempfile

    import keras

    keras.mixed_precision.set_global_policy(policy)
    from kerasseg.cli import ISBI_MASK_VALUES, _find_demo_data
    from kerasseg.data.masks import SegmentationFolder
    from kerasseg.training import TrainConfig, train_segmentation

    data = _find_demo_data()
    if data is None:
        raise SystemExit("--accuracy needs ../shared/data/isbi2012-membrane")
    folder = SegmentationFolder(
        data / "images", data / "masks", channels=1, mask_values=ISBI_MASK_VALUES
    )
    overrides, epochs, steps, learning_rate = ACCURACY_RUNS[model]
    config = TrainConfig(
        model=model,
        model_kwargs=overrides,
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=8,
        crop_size=128,
        learning_rate=learning_rate,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        results = train_segmentation(
            folder,
            train_indices=range(24),
            val_indices=range(24, 30),
            config=config,
            output_dir=out,
            verbose=0,
        )
    return {"dice": results["validation"]["dice"], "seconds": time.perf_counter() - started}


def _child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(args)], capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="also kerasseg under mixed_bfloat16")
    parser.add_argument(
        "--accuracy", action="store_true", help="ISBI Dice, float32 vs mixed_bfloat16"
    )
    parser.add_argument("--no-throughput", action="store_true", help="only the --accuracy part")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--modes", nargs="+", default=["train", "infer"], choices=("train", "infer")
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = json.loads(args.child)
        if kind == "keras":
            result = run_keras(*rest)
        elif kind == "smp":
            result = run_smp(*rest)
        elif kind == "fold":
            result = save_folded(*rest)
        elif kind == "flops":
            result = smp_flops(*rest)
        else:
            result = isbi_accuracy(*rest)
        print(json.dumps(result))
        return

    configs = []
    for arch in args.models:
        for mode in args.modes:
            configs.append(
                (f"kerasseg {arch}", mode, ["keras", "kerasseg", arch, mode, args.steps, "float32"])
            )
            if mode == "infer":
                folded = os.path.join(
                    tempfile.gettempdir(), f"kerasseg_bench_{arch}_folded_{os.getpid()}.keras"
                )
                configs.append(
                    (
                        f"kerasseg {arch} folded",
                        mode,
                        ["keras", "kerasseg", arch, mode, args.steps, "float32", folded],
                    )
                )
            if args.bf16:
                configs.append(
                    (
                        f"kerasseg {arch} bf16",
                        mode,
                        ["keras", "kerasseg", arch, mode, args.steps, "mixed_bfloat16"],
                    )
                )
            configs.append((f"sm {arch}", mode, ["keras", "sm", arch, mode, args.steps, "float32"]))
            configs.append((f"smp {arch}", mode, ["smp", arch, mode, args.steps]))
    if not args.no_throughput:
        throughput(configs, args)
    if args.accuracy:
        print(
            "\nISBI membranes, training from scratch on 8 crops 128x128 per step, Dice on slices 24-29:"
        )
        for model, (_, epochs, steps, _) in ACCURACY_RUNS.items():
            for policy in ("float32", "mixed_bfloat16"):
                r = _child(["accuracy", model, policy])
                print(
                    f"  {model:13s} {epochs} x {steps} steps  {policy:15s} validation Dice {r['dice']:.4f}"
                    f"  ({r['seconds']:.0f} s)"
                )


def throughput(configs: list, args: argparse.Namespace) -> None:
    flops = {arch: _child(["flops", arch]) for arch in args.models}
    folded_files = {child[6]: child[2] for _, _, child in configs if len(child) > 6}
    for path, arch in folded_files.items():  # folded once, in its own process; runs load the file
        _child(["fold", arch, path])
    try:
        _measure_and_print(configs, args, flops)
    finally:
        for path in folded_files:
            if os.path.exists(path):
                os.remove(path)


def _measure_and_print(configs: list, args: argparse.Namespace, flops: dict) -> None:
    best: dict[tuple[str, str], dict] = {}
    for _ in range(args.repeats):
        for label, mode, child in configs:
            result = _child(child)
            key = (label, mode)
            if key not in best or result["img_per_s"] > best[key]["img_per_s"]:
                best[key] = {
                    **result,
                    "peak_rss_mib": max(
                        result["peak_rss_mib"], best.get(key, {}).get("peak_rss_mib", 0)
                    ),
                }

    print(
        f"\n{SIZE}x{SIZE}, batch {BATCH}, {args.steps} steps, best of {args.repeats} rounds, "
        f"{os.cpu_count()} CPUs"
    )
    for arch in args.models:
        print(
            f"\n{arch}_resnet34: {flops[arch]['train_gflop']:.1f} GFLOP per training image, "
            f"{flops[arch]['infer_gflop']:.1f} per inference image (smp, torch flop counter)"
        )
        print(
            f"{'configuration':22s} {'mode':6s} {'img/s':>7s} {'GFLOP/s':>8s} {'CPU ms/img':>11s} "
            f"{'peak RSS MiB':>13s} {'vs fastest peer':>16s}"
        )
        for mode in args.modes:
            peers = [best[(f"{p} {arch}", mode)]["img_per_s"] for p in ("sm", "smp")]
            for label in [k[0] for k in best if k[1] == mode and k[0].split()[1] == arch]:
                r = best[(label, mode)]
                gflop = flops[arch]["train_gflop" if mode == "train" else "infer_gflop"]
                print(
                    f"{label:22s} {mode:6s} {r['img_per_s']:7.2f} {r['img_per_s'] * gflop:8.1f} "
                    f"{r['cpu_ms_per_img']:11.0f} {r['peak_rss_mib']:13.0f} {r['img_per_s'] / max(peers):15.2f}x"
                )


if __name__ == "__main__":
    main()
