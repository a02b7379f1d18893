"""Streaming segmentation metrics and the detection evaluator."""
