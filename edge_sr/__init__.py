"""edge-sr: real-time DCSCN super-resolution for edge devices.

The runtime package (``edge_sr``) needs numpy and OpenCV only; ONNX Runtime, TensorRT,
pycuda and torch are imported lazily by the backends that use them.
"""

__version__ = "0.1.0"
