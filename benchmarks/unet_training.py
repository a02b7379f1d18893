"""U-Net training throughput and memory: plain BCE vs kerasseg's BceDice + metrics.

Prints a table with training images/second and peak resident memory for

* ``bce``: ``keras.losses.BinaryCrossentropy`` and no metrics (the baseline),
* ``bce_dice+metrics``: ``kerasseg.losses.BceDice`` with streaming Dice, Jaccard and cosine
  (their value checks on, the default),

each measured in its own subprocess (so peak memory is per configuration) on the same
synthetic batches, and the overhead of the second relative to the first. With
``--check-values`` the pair is instead ``bce_dice+metrics`` with ``check_values=False``
(``unchecked``) and with the checks on (``checked``): the overhead of the value checks on a
training step. With ``--demo`` it then runs the demo's full budget on the ISBI 2012
membranes and prints the validation Dice.

    python benchmarks/unet_training.py [--steps 30] [--size 256] [--batch 8] [--demo]
    python benchmarks/unet_training.py --check-values [--repeats 3]

Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(config: str, steps: int, size: int, batch: int, filters: int) -> dict:
    import keras

    import kerasseg
    from kerasseg.data.synthetic import synthetic_shapes

    keras.utils.set_random_seed(0)
    images, masks = synthetic_shapes(batch * 4, (size, size), channels=1, seed=0)
    masks = masks.astype("float32")
    model = kerasseg.zoo.get("unet", weights=None, input_shape=(size, size, 1), filters=filters)
    if config == "bce":
        model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy())
    else:
        checks = {"check_values": config != "unchecked"}
        model.compile(
            optimizer="adam",
            loss=kerasseg.losses.BceDice(**checks),
            metrics=[
                kerasseg.metrics.Dice(**checks),
                kerasseg.metrics.Jaccard(**checks),
                kerasseg.metrics.Cosine(**checks),
            ],
        )
    # Warm-up: tracing and the first steps are not part of the steady state.
    model.fit(images, masks, batch_size=batch, epochs=1, steps_per_epoch=3, verbose=0)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((images, masks)).batch(batch).repeat().prefetch(2)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "config": config,
        "img_per_s": steps * batch / seconds,
        # CPU time is less sensitive than wall time to other load on a shared machine.
        "cpu_ms_per_img": 1000 * cpu / (steps * batch),
        "peak_rss_mib": peak_mib,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per configuration")
    parser.add_argument(
        "--demo", action="store_true", help="also run the demo's full budget on ISBI"
    )
    parser.add_argument(
        "--check-values",
        action="store_true",
        help="compare BceDice + metrics with the value checks off and on",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.size, args.batch, args.filters)))
        return

    if args.check_values:
        baseline, measured, label = "unchecked", "checked", "the value checks"
    else:
        baseline, measured = "bce", "bce_dice+metrics"
        label = "BceDice + Dice/Jaccard/cosine"
    results: dict[str, list[dict]] = {baseline: [], measured: []}
    for _ in range(args.repeats):
        for config in results:  # alternate, so drifting machine load hits both alike
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    config,
                    "--steps",
                    str(args.steps),
                    "--size",
                    str(args.size),
                    "--batch",
                    str(args.batch),
                    "--filters",
                    str(args.filters),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[config].append(json.loads(out.stdout.strip().splitlines()[-1]))

    print(
        f"\nU-Net (filters={args.filters}, depth 4) training, {args.size}x{args.size}, batch {args.batch}, "
        f"{args.steps} steps, best of {args.repeats}"
    )
    print(f"{'configuration':20s} {'img/s':>8s} {'CPU ms/img':>11s} {'peak RSS MiB':>13s}")
    best = {}
    for config, runs in results.items():
        best[config] = {
            "img_per_s": max(r["img_per_s"] for r in runs),
            "cpu_ms_per_img": min(r["cpu_ms_per_img"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        }
        b = best[config]
        print(
            f"{config:20s} {b['img_per_s']:8.2f} {b['cpu_ms_per_img']:11.0f} {b['peak_rss_mib']:13.0f}"
        )
    wall = best[baseline]["img_per_s"] / best[measured]["img_per_s"]
    cpu = best[measured]["cpu_ms_per_img"] / best[baseline]["cpu_ms_per_img"]
    print(
        f"overhead of {label}: {100 * (wall - 1):+.1f}% wall time, "
        f"{100 * (cpu - 1):+.1f}% CPU time per image"
    )

    if args.demo:
        from kerasseg.cli import main as cli_main

        output = "benchmark-demo-output"
        cli_main(["demo", "--output", output, "--quiet"])
        with open(os.path.join(output, "results.json")) as handle:
            scores = json.load(handle)["validation"]
        print(
            f"\ndemo (full budget) validation on ISBI slices 24-29: Dice {scores['dice']:.4f}, "
            f"Jaccard {scores['jaccard']:.4f}"
        )


if __name__ == "__main__":
    main()
