"""docs/deploy.md's API table against the code and against the compiled bindings' record: a TensorRT /
CUDA name the code starts using must be checked and listed there first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from api_names import REPO, table_rows, used_names

RECORD = json.loads((Path(__file__).parent / "fixtures" / "tensorrt_api_names.json").read_text())


def test_every_name_the_code_uses_is_in_the_table():
    rows = table_rows()
    missing = sorted(f"{v}: {n}" for v, names in used_names().items() for n in names if (v, n) not in rows)
    assert not missing, f"names used by the device code but absent from docs/deploy.md's API table: {missing}"


def test_no_stale_rows():
    used = used_names()
    stale = sorted(f"{v}: {n}" for v, n in table_rows() if n not in used.get(v, ()))
    assert not stale, f"table rows the code no longer uses: {stale}"


def test_cells_match_the_record_of_the_compiled_bindings():
    for (vendor, name), cells in table_rows().items():
        for version, present in RECORD[vendor].items():
            assert cells[version] == ("yes" if name in present else "—"), (vendor, name, version)


def test_names_the_code_relies_on_per_generation():
    """Spot checks of the record that the code's feature branches depend on."""
    trt = RECORD["tensorrt"]
    assert "execute_async_v2" in trt["8.6.1"] and "execute_async_v2" not in trt["10.3.0"]
    assert "EXPLICIT_BATCH" in trt["10.16.1"] and "EXPLICIT_BATCH" not in trt["11.0.0"]
    assert "IInt8EntropyCalibrator2" in trt["10.3.0"] and "IInt8EntropyCalibrator2" not in trt["11.4.0"]
    assert all("set_timing_cache" in trt[v] and "set_tensor_address" in trt[v] for v in trt)


def test_cuda_python_names_exist_in_the_installed_package():
    rt = pytest.importorskip("cuda.bindings.runtime")
    missing = [n for n in used_names()["cuda-python"]
               if not (hasattr(rt, n) or hasattr(rt.cudaMemcpyKind, n) or hasattr(rt.cudaDeviceProp(), n))]
    assert not missing


def test_sources_exist():
    from api_names import SOURCES

    assert all((REPO / s).is_file() for s in SOURCES)
