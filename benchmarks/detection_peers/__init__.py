"""The per-run children of `benchmarks/detection.py`, one module per kind of peer.

`common` (standard library only) is shared by every child, including the ultralytics one,
which runs in its own virtual environment without Keras or TensorFlow; `keras_peers`
trains kerasseg's detectors, keras-cv's YOLOv8 and keras-hub's RetinaNet;
`ultralytics_peer` trains ultralytics' YOLOv8n; `yolo_format` writes BCCD in the YOLO
layout that ultralytics reads.
"""
