"""recordkit: image datasets to sharded TFRecords with Apache Beam, and ImageNet fine-tuning."""

__version__ = "0.1.0"
