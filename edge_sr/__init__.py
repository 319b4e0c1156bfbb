"""edge-sr: real-time DCSCN super-resolution for edge devices.

The runtime package (``edge_sr``) needs numpy, OpenCV and Pillow; ONNX Runtime, TensorRT, pycuda
and torch are imported lazily by the backends that use them.

Python API (see ``edge_sr.api``; nothing is imported until a name is used)::

    import edge_sr
    with edge_sr.load("normal") as sr:                             # preset or model file
        out = edge_sr.upscale(sr, img, channel_order="bgr")        # numpy, BGR or RGB said explicitly
        edge_sr.upscale_file(sr, "photo.jpg", "photo_x2.jpg")
        edge_sr.upscale_folder(sr, "photos/", "out/")
"""

__version__ = "0.1.0"

_API = {
    "load": "edge_sr.api",
    "upscale": "edge_sr.api",
    "upscale_file": "edge_sr.api",
    "upscale_folder": "edge_sr.api",
    "open_upscaler": "edge_sr.backends",
    "Upscaler": "edge_sr.backends",
    "EdgeSRError": "edge_sr.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edge_sr' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
