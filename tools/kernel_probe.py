"""A pytest plugin that records which kernels and threads the process that ran the tests used.

``tools/kernel_matrix.py`` loads it into every pytest process it starts (``-p kernel_probe``,
with ``tools/`` on ``PYTHONPATH``) and names a folder in ``NETHARNESS_KERNEL_PROBE``. At the
end of its session, each process that ran tests (every xdist worker, or the one process
without xdist) writes ``<pid>.json`` there, read from the libraries themselves:

- ``openblas``: every OpenBLAS library loaded (NumPy's and SciPy's each bundle one), with the
  core type it dispatched to and its threads, from threadpoolctl;
- ``openmp_threads``: the OpenMP runtimes' threads (torch's), from threadpoolctl;
- ``aten``: ``torch.backends.cpu.get_cpu_capability()``, the kernels ATen dispatches to;
- ``torch_threads``: ``torch.get_num_threads()`` (onnxruntime's sessions use the same number);
- ``onednn``: the ISA oneDNN reports in its verbose header, from one small convolution run
  with verbose output on and the process's standard output sent to a file meanwhile;
- ``xla``: the widest vector registers (xmm, ymm, zmm) and whether FMA instructions appear in
  the machine code XLA generates for a small function (a matmul, tanh and an add) compiled
  here, read with ``objdump`` from the object files XLA dumps. XLA names no instruction set.

A library the tests never loaded is not loaded here either: its entry is absent, because no
test ran on it. Nothing is asserted here; the matrix compares the records with what each
selection asked for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

PROBE_ENV = "NETHARNESS_KERNEL_PROBE"


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = os.environ.get(PROBE_ENV)
    if not folder or session.config.pluginmanager.has_plugin("dsession"):
        return  # not asked, or the xdist controller, which runs no test
    record = read_kernels()
    Path(folder, f"{os.getpid()}.json").write_text(json.dumps(record))


def read_kernels() -> dict[str, Any]:
    """What this process's loaded libraries report; see the module docstring."""
    record: dict[str, Any] = {"pid": os.getpid()}
    try:
        import threadpoolctl
    except ImportError:
        record["threadpoolctl"] = "missing"
    else:
        pools = threadpoolctl.threadpool_info()
        record["openblas"] = [
            {"library": Path(p["filepath"]).name, "architecture": p.get("architecture"), "threads": p["num_threads"]}
            for p in pools
            if p["internal_api"] == "openblas"
        ]
        record["openmp_threads"] = sorted({p["num_threads"] for p in pools if p["internal_api"] == "openmp"})
    if "torch" in sys.modules:
        import torch

        record["aten"] = torch.backends.cpu.get_cpu_capability()
        record["torch_threads"] = torch.get_num_threads()
        record["onednn"] = onednn_isa()
    if "jax" in sys.modules:
        record["xla"] = xla_code()
    return record


def onednn_isa() -> str | None:
    """The ISA in oneDNN's verbose header (``onednn_verbose,...,info,cpu,isa:Intel AVX2``), or None.

    oneDNN prints the header to the C standard output once, with the first verbose line;
    torch's build hides oneDNN's own query function, so the header is the way to ask.
    """
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    x, w = torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2)
    sys.stdout.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(1)
        os.dup2(sink.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.mkldnn_convolution(x, w, None, [0, 0], [1, 1], [1, 1], 1)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        found = re.search(r"info,cpu,isa:([^\n]*)", sink.read().decode(errors="replace"))
    return found.group(1).strip() if found else None


def xla_code() -> dict[str, Any] | str:
    """The widest vector registers and whether FMA appears in XLA's code for one small function; why not, if not."""
    import jax
    import jax.numpy as jnp

    objdump = shutil.which("objdump")
    if objdump is None:
        return "objdump is missing (binutils)"
    salt = float(time.monotonic_ns() % 1_000_003)  # a constant of its own: a new program, compiled now
    cached = jax.config.jax_enable_compilation_cache  # type: ignore[attr-defined]
    jax.config.update("jax_enable_compilation_cache", False)  # and not stored in the tests' cache
    try:
        with tempfile.TemporaryDirectory() as folder, jax.default_device(jax.devices("cpu")[0]):
            a = jnp.ones((16, 16), jnp.float32)
            jax.jit(lambda a: jnp.tanh(a * salt) @ a + a).lower(a).compile({"xla_dump_to": folder})
            disassembled = [
                subprocess.run([objdump, "-d", str(o)], capture_output=True, text=True, check=False).stdout
                for o in sorted(Path(folder).glob("*.o"))
            ]
    finally:
        jax.config.update("jax_enable_compilation_cache", cached)
    code = "".join(disassembled)
    if not code:
        return "XLA dumped no object code"
    widest = next(r for r in ("zmm", "ymm", "xmm") if f"%{r}" in code or r == "xmm")
    return {"widest": widest, "fma": bool(re.search(r"\bvfn?m(add|sub)", code))}
