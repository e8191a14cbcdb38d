"""The tiny digits protocol every study test writes into its YAML: a 15% holdout, test_resnet at 8 px,
one epoch (``TINY_DIGITS.replace("epochs: 1", ...)`` for more)."""

TINY_DIGITS = """data: digits
validation: {fraction: 0.15, seed: 0}
common: {backbone: test_resnet, embedding_dim: 16, image_size: 8, batch_size: 64, epochs: 1, lr: 0.05,
         augment: none, device: cpu}
"""
