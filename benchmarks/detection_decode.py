"""How much of a detector's ``predict`` time the decoding (box decoding, top-k, NMS) takes.

For each detector, input size and batch size: the median time of the traced network alone
(``model(x)``) and of the traced network + decoding (``model.decode(model(x), x)``, what
``predict`` runs), and the decoding's share of the second. Random weights and images; the
score threshold is the detector's evaluation default (the most candidates reach NMS).

    python benchmarks/detection_decode.py [--models yolov8_n ...] [--sizes 320 512]
        [--batches 1 8] [--repeats 10] [--pre-nms-top-k K]

Never part of the test run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ("yolov8_n", "yolov2_cspdarknet_n", "ssd_resnet18", "retinanet_resnet18")


def median_seconds(fn, x, repeats: int) -> float:
    fn(x)  # trace
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 512])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument(
        "--pre-nms-top-k",
        type=int,
        default=None,
        help="candidates per level entering NMS (default: each detector's own)",
    )
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    import kerasseg

    print(
        f"{'model':22s} {'size':>5s} {'batch':>5s} {'network ms':>11s} {'predict ms':>11s} {'decode share':>13s}"
    )
    for name in args.models:
        model = kerasseg.zoo.get(name, weights=None, num_classes=args.classes)
        if args.pre_nms_top_k is not None:
            model.pre_nms_top_k = args.pre_nms_top_k
        network = tf.function(lambda x, m=model: m(x, training=False))
        full = tf.function(lambda x, m=model: m.decode(m(x, training=False), x))
        for size in args.sizes:
            for batch in args.batches:
                rng = np.random.default_rng(0)
                x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
                net = median_seconds(network, x, args.repeats)
                both = median_seconds(full, x, args.repeats)
                share = max(both - net, 0.0) / both
                print(
                    f"{name:22s} {size:5d} {batch:5d} {net * 1e3:11.1f} {both * 1e3:11.1f} "
                    f"{share:13.1%}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
