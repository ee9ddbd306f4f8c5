"""The kernel selections of tools/kernel_matrix.py: the knobs, what a CPU supports, what a run must show.

A selection moves one knob from the default; it names the variables it sets, the
``/proc/cpuinfo`` flags its kernels need, the backends whose kernels it changes, and what the
test processes must then report (``tools/kernel_probe.py``) for it to count as in effect.
"""

from __future__ import annotations

import getpass
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KNOB_VARIABLES = (
    "OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "XLA_FLAGS",
)  # fmt: skip
"""Removed from every child's environment before its selection sets one of them."""
INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"

AVX512_CORE = ("avx512f", "avx512bw", "avx512dq", "avx512vl")
"""/proc/cpuinfo's names for the AVX-512 subset that ATen's avx512 and oneDNN's AVX512_CORE need."""

OPENBLAS_CORES: dict[str, tuple[str, ...]] = {
    "Prescott": ("pni",),  # SSE3 (cpuinfo calls it pni)
    "Nehalem": ("ssse3", "sse4_1", "sse4_2"),
    "Sandybridge": ("avx",),
    "Haswell": ("avx2", "fma"),
    "Zen": ("avx2", "fma"),
    "SkylakeX": (*AVX512_CORE, "avx512cd"),
    "Cooperlake": (*AVX512_CORE, "avx512cd", "avx512_bf16"),
}
OPENBLAS_REPORTS = {"Prescott": "Katmai", "Zen": "Haswell"}
"""The name an x86-64 OpenBLAS reports for a core type whose kernel table it shares: its Prescott
table answers to Katmai's name, and its Zen core type runs the Haswell kernels."""
ALIASES = {"Katmai": "Prescott"}
"""Reported names that say less than the core type behind them."""

ATEN_CAPABILITIES: dict[str, tuple[str, ...]] = {"default": (), "avx2": ("avx2", "fma"), "avx512": AVX512_CORE}
ONEDNN_ISAS: dict[str, tuple[tuple[str, ...], str]] = {
    # ONEDNN_MAX_CPU_ISA value: (flags it needs, the ISA oneDNN's verbose header then names)
    "SSE41": (("sse4_1",), "Intel SSE4.1"),
    "AVX": (("avx",), "Intel AVX"),
    "AVX2": (("avx2",), "Intel AVX2"),
    "AVX512_CORE": (AVX512_CORE, "Intel AVX-512"),
}
XLA_ISAS: dict[str, tuple[tuple[str, ...], str, bool]] = {
    # --xla_cpu_max_isa value: (flags it needs, the widest registers and whether FMA may then appear)
    "SSE4_2": (("sse4_2",), "xmm", False),
    "AVX": (("avx",), "ymm", False),
    "AVX2": (("avx2", "fma"), "ymm", True),
    "AVX512": (AVX512_CORE, "zmm", True),
}
REGISTERS = ("xmm", "ymm", "zmm")
THREADS = (1, 2)
TORCH_BACKENDS = ("eager", "compile")
ONEDNN_BACKENDS = (*TORCH_BACKENDS, "jax")
"""jaxlib carries oneDNN too, and XLA calls it: the full matrix found jax's float32 results moved under
ONEDNN_MAX_CPU_ISA=SSE41 and AVX (batch_independence's headroom 126 -> 73), not only torch's."""
"""The built-in backends whose kernels ATen and oneDNN pick (compile's generated code follows ATen's ISA)."""


@dataclass(frozen=True)
class Selection:
    """One knob moved from the default: its variables, the CPU flags it needs, what should then be seen."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    cpus: int = 1
    openblas: str | None = None
    aten: str | None = None
    onednn: str | None = None
    xla: tuple[str, bool] | None = None
    threads: int | None = None
    reaches: tuple[str, ...] = ()
    """The built-in backends whose kernels it changes; empty for every backend (OpenBLAS reaches every
    check through the oracle). ``--quick`` runs a selection on these only; the full matrix on all."""

    def sets(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.env.items()) or "(nothing)"


def all_selections() -> list[Selection]:
    """Every selection, in the order the matrix runs them: the default first, then one knob at a time."""
    found = [Selection("default")]
    for core, needs in OPENBLAS_CORES.items():
        reports = OPENBLAS_REPORTS.get(core, core)
        found.append(Selection(f"openblas={core}", {"OPENBLAS_CORETYPE": core}, needs, openblas=reports))
    for capability, needs in ATEN_CAPABILITIES.items():
        env = {"ATEN_CPU_CAPABILITY": capability}
        found.append(Selection(f"aten={capability}", env, needs, aten=capability, reaches=TORCH_BACKENDS))
    for isa, (needs, reported) in ONEDNN_ISAS.items():
        env = {"ONEDNN_MAX_CPU_ISA": isa}
        found.append(Selection(f"onednn={isa}", env, needs, onednn=reported, reaches=ONEDNN_BACKENDS))
    for isa, (needs, widest, fma) in XLA_ISAS.items():
        env = {"XLA_FLAGS": f"--xla_cpu_max_isa={isa}"}
        found.append(Selection(f"xla={isa}", env, needs, xla=(widest, fma), reaches=("jax",)))
    for n in THREADS:
        env = {name: str(n) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        if n == 1:
            env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
        found.append(Selection(f"threads={n}", env, cpus=n, threads=n))
    return found


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's flags; an empty set where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_count() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def skip_reason(selection: Selection, flags: frozenset[str], cpus: int) -> str | None:
    """Why this machine cannot run a selection, or None when it can."""
    if not flags and selection.needs:
        return "no /proc/cpuinfo flags to check the instructions it needs against"
    missing = [flag for flag in selection.needs if flag not in flags]
    if missing:
        return f"needs {', '.join(missing)}, which this CPU lacks"
    if selection.cpus > cpus:
        return f"needs {selection.cpus} CPUs, this process may use {cpus}"
    return None


def backends_for(selection: Selection, backends: str, quick: bool) -> str:
    """The ``--backend`` value of a selection's run: under ``quick``, only the chosen backends it reaches."""
    if not quick or not selection.reaches:
        return backends
    names = [n.strip() for n in backends.split(",") if n.strip()]
    return ",".join(selection.reaches if "all" in names else [n for n in names if n in selection.reaches])


def plan(
    names: Sequence[str] | None, flags: frozenset[str], cpus: int, backends: str = "all", quick: bool = False
) -> list[tuple[Selection, str | None, str]]:
    """The chosen selections (all when ``names`` is None), each with its skip reason or None and its backends."""
    every = {s.name: s for s in all_selections()}
    planned = []
    for selection in every.values() if names is None else [every[n] for n in names]:
        reached = backends_for(selection, backends, quick)
        why = skip_reason(selection, flags, cpus)
        if why is None and not reached:
            why = f"changes the kernels of {', '.join(selection.reaches)} only, none of them chosen"
        planned.append((selection, why, reached))
    return planned


def selection_environment(selection: Selection, base: dict[str, str]) -> dict[str, str]:
    """``base`` less every knob, plus the selection's variables; each ATen capability its own inductor cache.

    inductor's FX graph cache key leaves out the vector ISA it generated code for: a graph
    compiled under one ATEN_CPU_CAPABILITY is reused under another, where its C++ may not even
    compile (vector code built without the vector headers). Each capability keeps its own cache.
    """
    env = {k: v for k, v in base.items() if k not in KNOB_VARIABLES}
    env.update(selection.env)
    if selection.aten is not None:
        default = Path(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")
        env[INDUCTOR_CACHE_ENV] = f"{env.get(INDUCTOR_CACHE_ENV) or default}-aten-{selection.aten}"
    return env


def verify(selection: Selection, records: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """What the test processes ran, in words, and every way it differs from what ``selection`` asked for."""
    if not records:
        return "", ["no test process reported its kernels"]
    problems = []
    if (selection.openblas or selection.threads) and any("threadpoolctl" in r for r in records):
        problems.append("OpenBLAS not checked: threadpoolctl is missing (pip install threadpoolctl)")
    blas = [lib for r in records for lib in r.get("openblas", [])]
    cores = sorted({str(lib["architecture"]) for lib in blas})
    blas_threads = sorted({int(lib["threads"]) for lib in blas})
    torch = [r for r in records if "aten" in r]
    aten = sorted({str(r["aten"]) for r in torch})
    onednn = sorted({str(r["onednn"]).split(" with ")[0] for r in torch if r.get("onednn")})
    torch_threads = sorted({int(r["torch_threads"]) for r in torch})
    omp_threads = sorted({int(n) for r in records for n in r.get("openmp_threads", [])})
    named = [f"{core} ({ALIASES[core]}'s kernels)" if core in ALIASES else core for core in cores]
    words = [f"OpenBLAS {'/'.join(named) or 'not loaded'}"]
    if torch:
        words += [f"ATen {'/'.join(aten)}", f"oneDNN {'/'.join(onednn).removeprefix('Intel ') or 'unknown'}"]
    xla = [r["xla"] for r in records if "xla" in r]
    xla_code = sorted({(c["widest"], c["fma"]) for c in xla if isinstance(c, dict)})
    if xla:
        words.append("XLA " + ("/".join(f"{w}{' FMA' if fma else ''}" for w, fma in xla_code) or "unknown"))
    threads = {"torch": torch_threads, "OpenBLAS": blas_threads, "OpenMP": omp_threads}
    words.append("threads " + ", ".join(f"{k} {'/'.join(map(str, v))}" for k, v in threads.items() if v))

    if selection.openblas is not None and cores != [selection.openblas]:
        problems.append(f"OpenBLAS ran {'/'.join(cores) or 'nowhere'}, not {selection.openblas}")
    if selection.aten is not None and torch and aten != [selection.aten.upper()]:
        problems.append(f"ATen ran {'/'.join(aten)}, not {selection.aten.upper()}")
    if selection.onednn is not None and torch and onednn != [selection.onednn]:
        problems.append(f"oneDNN ran {'/'.join(onednn) or 'an ISA it did not report'}, not {selection.onednn}")
    if selection.xla is not None and xla:
        widest, fma = selection.xla
        problems += [f"XLA not checked: {c}" for c in sorted({c for c in xla if isinstance(c, str)})]
        for used, used_fma in xla_code:
            if REGISTERS.index(used) > REGISTERS.index(widest) or (used_fma and not fma):
                allowed = f"{widest}{'' if fma else ' without FMA'}"
                problems.append(f"XLA's code used {used}{' and FMA' if used_fma else ''}, beyond {allowed}")
    if selection.threads is not None:
        for library, counts in threads.items():
            if counts and counts != [selection.threads]:
                problems.append(f"{library} ran {'/'.join(map(str, counts))} threads, not {selection.threads}")
    return "; ".join(words), problems


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return "?"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")
