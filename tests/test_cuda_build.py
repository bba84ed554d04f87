"""The CUDA kernels compile for every architecture the build targets, without a warning and without
register spills in the hot kernels (what ptxas reports with -v). Needs nvcc and cuBLAS's headers
(the nvidia-cublas package), not a GPU; skipped where either is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["80", "90"]  # FASTRNN_CUDA_ARCHITECTURES: machine code for these, PTX of the last
HOT = ["RnnForwardStep", "LstmForwardStep", "GruForwardStep", "RnnBackwardStep",
       "LstmBackwardStep", "GruBackwardStep"]
TYPES = ["float", "double", "__half", "__nv_bfloat16"]  # as they appear in demangled names


def cublas_include() -> str:
    try:
        import nvidia.cu13
    except ImportError:
        pytest.skip("no cuBLAS headers (pip install nvidia-cublas)")
    include = os.path.join(list(nvidia.cu13.__path__)[0], "include")
    if not os.path.exists(os.path.join(include, "cublas_v2.h")):
        pytest.skip(f"no cublas_v2.h in {include}")
    return include


def compile_report(source: str, out_dir: Path) -> str:
    """ptxas -v's report of compiling csrc/cuda/<source> for ARCHS, warnings as errors."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    cmd = [nvcc, "-std=c++17", "-O3", "-c", str(ROOT / "csrc/cuda" / source),
           "-o", str(out_dir / (source + ".o")), "-I" + cublas_include(),
           "--Werror", "all-warnings", "-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter,-Werror",
           "-Xptxas=-v"]
    for arch in ARCHS:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"nvcc failed (warnings are errors):\n{done.stderr[-4000:]}"
    return done.stderr


@pytest.fixture(scope="module")
def ptxas_report(tmp_path_factory) -> str:
    return compile_report("sequence.cu", tmp_path_factory.mktemp("cuda"))


@pytest.fixture(scope="module")
def stack_report(tmp_path_factory) -> str:
    return compile_report("stack.cu", tmp_path_factory.mktemp("cuda_stack"))


def kernels(report: str) -> dict:
    """{(demangled kernel, arch): (spill store bytes, spill load bytes)} from ptxas -v."""
    found = {}
    entry = None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for 'sm_(\d+)'", line)
        if m:
            entry = (demangle(m.group(1)), m.group(2))
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and entry is not None:
            found[entry] = (int(m.group(1)), int(m.group(2)))
            entry = None
    return found


def demangle(name: str) -> str:
    cxxfilt = shutil.which("c++filt")
    if cxxfilt is None:
        return name
    return subprocess.run([cxxfilt, name], capture_output=True, text=True).stdout.strip()


def test_every_hot_kernel_is_built_for_every_architecture(ptxas_report):
    names = kernels(ptxas_report)
    for arch in ARCHS:
        for kernel in HOT:
            for t in TYPES:
                assert any(kernel + "<" + t in k and a == arch for k, a in names), \
                    f"no {kernel}<{t}, ...> kernel for sm_{arch}"


def test_no_kernel_spills_registers(ptxas_report):
    names = kernels(ptxas_report)
    assert names, "ptxas reported no kernels"
    spills = {f"{k} (sm_{a})": v for (k, a), v in names.items() if v != (0, 0)}
    assert not spills, f"register spills (store, load bytes): {spills}"


def test_stack_kernels_build_without_warnings_or_spills(stack_report):
    names = kernels(stack_report)
    for kernel in ("GatherRows", "ScatterRows", "AddTo", "ScaleBy"):
        for arch in ARCHS:
            assert any(kernel + "<" in k and a == arch for k, a in names), \
                f"no {kernel} kernel for sm_{arch}"
    spills = {f"{k} (sm_{a})": v for (k, a), v in names.items() if v != (0, 0)}
    assert not spills, f"register spills (store, load bytes): {spills}"


@pytest.fixture(scope="module")
def tree_report(tmp_path_factory) -> str:
    return compile_report("tree.cu", tmp_path_factory.mktemp("cuda_tree"))


def test_tree_kernels_build_for_every_type_without_warnings_or_spills(tree_report):
    names = kernels(tree_report)
    for kernel in ("TreeForwardNode", "TreeBackwardNode", "GatherChildren", "ChildGrads",
                   "BiasRows", "RowsFromNodes", "RowsToNodes"):
        for arch in ARCHS:
            assert any(kernel + "<" in k and a == arch for k, a in names), \
                f"no {kernel} kernel for sm_{arch}"
    for kernel in ("TreeForwardNode", "TreeBackwardNode"):
        for arch in ARCHS:
            for t in TYPES:
                assert any(kernel + "<" + t in k and a == arch for k, a in names), \
                    f"no {kernel}<{t}, ...> kernel for sm_{arch}"
    spills = {f"{k} (sm_{a})": v for (k, a), v in names.items() if v != (0, 0)}
    assert not spills, f"register spills (store, load bytes): {spills}"
