"""Dense segmentation losses (Keras `Loss` subclasses, serializable)."""
