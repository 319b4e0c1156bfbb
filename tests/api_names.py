"""The TensorRT / CUDA names our device code uses, read from its source (AST), for the API table of
docs/deploy.md (tests/test_tensorrt_api_table.py) and scripts/tensorrt_api_names.py.

A name counts when it is an attribute of a vendor object, or a string given to hasattr/getattr on
one, or a callback we define on a class derived from a vendor class. Vendor objects: the modules
(``trt``; pycuda's driver as ``self.drv``; cuda-python's runtime as ``self.rt``), pycuda's context
``self.ctx``, the TensorRT objects the upscaler keeps (``self._engine``, ``self._ctx``,
``self._runtime``), anything a call or attribute of a vendor object returns, and names assigned from
one in the same function.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("edge_sr/backends/tensorrt.py", "deploy/tensorrt_build.py", "calibration/tensorrt_calibrator.py")
# ``trt`` everywhere; TensorRT objects passed as parameters under these names in deploy/tensorrt_build.py
ROOTS = {"trt": "tensorrt", "builder": "tensorrt", "network": "tensorrt", "config": "tensorrt", "parser": "tensorrt",
         "profile": "tensorrt"}
SELF_ROOTS = {"drv": "pycuda", "ctx": "pycuda", "rt": "cuda-python", "_engine": "tensorrt", "_ctx": "tensorrt",
              "_runtime": "tensorrt"}
OURS = {"capture", "check", "free"}  # our own methods on classes derived from TensorRT's
# attributes of the Python/numpy values vendor calls return (bytes names, pinned numpy arrays)
NOT_VENDOR = set(dir(bytes)) | set(dir(str)) | {"base"}


def _origin(node, local: dict) -> str | None:
    """Which vendor a node's value comes from, or None."""
    if isinstance(node, ast.Name):
        return ROOTS.get(node.id) or local.get(node.id)
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in SELF_ROOTS:
            return SELF_ROOTS[node.attr]
        return _origin(node.value, local)
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "_call" and node.args:  # self._call(self.rt.cudaX, ...)
            return _origin(node.args[0], local)
        return _origin(f, local)
    if isinstance(node, ast.Subscript):
        return _origin(node.value, local)
    return None


def used_names() -> dict[str, set[str]]:
    """{'tensorrt': {...}, 'pycuda': {...}, 'cuda-python': {...}}"""
    out: dict[str, set[str]] = {"tensorrt": set(), "pycuda": set(), "cuda-python": set()}
    for rel in SOURCES:
        tree = ast.parse((REPO / rel).read_text())
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Module))]:
            local: dict[str, str] = {}
            body = fn.body
            for stmt in body:
                for node in ast.walk(stmt):
                    if isinstance(node, ast.Assign):
                        o = _origin(node.value, local)
                        for t in node.targets:
                            if o and isinstance(t, ast.Name):
                                local[t.id] = o
                    elif isinstance(node, ast.Attribute):
                        o = _origin(node.value, local)
                        if o:
                            out[o].add(node.attr)
                    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                            and node.func.id in ("hasattr", "getattr") and len(node.args) >= 2 \
                            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                        o = _origin(node.args[0], local)
                        if o:
                            out[o].add(node.args[1].value)
            if isinstance(fn, ast.Module):
                continue
        for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:  # callbacks TensorRT calls
            if any(_origin(b, {}) == "tensorrt" for b in cls.bases):
                for item in cls.body:
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("_") and item.name not in OURS:
                        out["tensorrt"].add(item.name)
    out["tensorrt"].discard("__init__")
    return {k: {n for n in v if n not in NOT_VENDOR or n == "__version__"} for k, v in out.items()}


def table_rows(doc: Path | None = None) -> dict[tuple[str, str], dict]:
    """The API tables of docs/deploy.md: {(vendor, name): {column: cell}} from rows
    '| `name` | vendor | cell | cell ... |' between the markers."""
    text = (doc or REPO / "docs" / "deploy.md").read_text()
    start, end = text.index("<!-- api-table -->"), text.index("<!-- /api-table -->")
    rows, header = {}, None
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        if cells[0] == "name":
            header = cells
            continue
        if cells[0].startswith("`"):
            rows[(cells[1], cells[0].strip("`"))] = dict(zip(header[2:], cells[2:]))
    return rows
