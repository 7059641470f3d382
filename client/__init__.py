"""Edge client for the segmentation model server. Never imports TensorFlow.

For now it holds the pure-numpy palette helpers that training and serving share.
"""

from client.palette import VOC_CLASS_NAMES, colorize, voc_colormap

__all__ = ["VOC_CLASS_NAMES", "colorize", "voc_colormap"]
