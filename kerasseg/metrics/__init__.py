"""Streaming segmentation metrics and the detection evaluator."""

from kerasseg.metrics.segmentation import ConfusionMetric, Cosine, Dice, Jaccard  # noqa: F401
