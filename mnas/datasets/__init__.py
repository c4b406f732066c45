"""TFDS datasets bundled with mnas. Importing this package registers them."""

from mnas.datasets.shapes import MnasShapes

__all__ = ['MnasShapes']
