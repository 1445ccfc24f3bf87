"""Which llama.cpp CPU kernels this process runs, chosen when it starts, not when llama.cpp was built.

`make install` builds llama-cpp-python with ``GGML_BACKEND_DL`` and ``GGML_CPU_ALL_VARIANTS``: the CPU
backend is a set of shared libraries, ``libggml-cpu-<variant>.so`` (haswell for AVX2, skylakex and icelake
for AVX-512, zen4 for AVX512-BF16, sapphirerapids for AMX, ...), each built for one micro-architecture.
ggml scores each against the running CPU and loads the best. One install therefore runs on every x86-64
CPU, with the kernels of the CPU it runs on, even when the virtual environment moves to another machine.

llama.cpp looks for the variants next to the executable (python's, here) and in the working directory,
where they are not, so `load_cpu_backend` points it at the folder llama-cpp-python installed them in,
before the first model loads. A build without variants (a native build, ``GGML_NATIVE=ON``, or a
package built elsewhere) has its CPU backend linked in; then there is nothing to load.

``python -m rankdistill.llm.llamacpp_cpu [llama_cpp.server arguments]`` starts llama-cpp-python's
OpenAI-compatible server with the variants loaded (``python -m llama_cpp.server`` alone finds none in
such a build and refuses to load a model).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

from rankdistill.errors import RankdistillError, require
from rankdistill.hardware import cpu_info

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: str | None = None


def library_dir(llama_cpp=None) -> Path:
    """The folder holding llama-cpp-python's shared libraries."""
    llama_cpp = llama_cpp or require("llama_cpp", "llm", "The llama.cpp backend")
    return Path(llama_cpp.__file__).resolve().parent / "lib"


def cpu_variants(lib_dir: Path) -> list[Path]:
    """The per-micro-architecture CPU backends of a ``GGML_CPU_ALL_VARIANTS`` build ([] otherwise)."""
    return sorted(lib_dir.glob("libggml-cpu-*.so")) + sorted(lib_dir.glob("ggml-cpu-*.dll"))


def _variant_name(path: Path) -> str:
    return path.stem.removeprefix("lib").removeprefix("ggml-cpu-")


def _mapped_paths(prefix: str) -> list[Path]:
    """Files mapped into this process whose name starts with `prefix` (read from /proc/self/maps)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    paths = {Path(line.split(maxsplit=5)[-1]) for line in lines if len(line.split(maxsplit=5)) == 6}
    return sorted(p for p in paths if p.name.startswith(prefix))


def mapped_cpu_backend() -> str | None:
    """The file name of the ggml CPU backend mapped into this process."""
    names = sorted({p.name for p in _mapped_paths("libggml-cpu")})
    return ", ".join(names) or None


def load_cpu_backend() -> str:
    """Load the best llama.cpp CPU backend for this CPU (once a process) and return its name.

    Raises a one-line `RankdistillError` where no variant fits (an x86 CPU without AVX2: the build's
    least variant is haswell), instead of the illegal instruction the process would otherwise die of."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        llama_cpp = require("llama_cpp", "llm", "The llama.cpp backend")
        lib_dir = library_dir(llama_cpp)
        variants = cpu_variants(lib_dir)
        if not variants:
            # CPU backend linked into libggml: a native or single-target build, usable only where it was built
            _loaded = "built-in (no runtime CPU variants; a native build runs only on CPUs like its build machine's)"
            log.info("llama.cpp CPU backend: %s", _loaded)
            return _loaded
        ggml = _ggml_library(lib_dir)
        if ggml.ggml_backend_reg_count() == 0:
            ggml.ggml_backend_load_all_from_path(str(lib_dir).encode())
        chosen = mapped_cpu_backend()
        info = cpu_info()
        if not chosen:
            # ggml scored every variant against this CPU's CPUID and none fits
            raise RankdistillError(
                f"llama.cpp has no CPU backend for this CPU ({info.model}): the variants in {lib_dir} "
                f"({', '.join(_variant_name(p) for p in variants)}) need at least AVX2 (x86-64-v3). Use an "
                "OpenAI-compatible server on another machine (openai:URL) or the transformers backend (hf:MODEL)."
            )
        _loaded = chosen
        log.info("llama.cpp CPU backend: %s (for %s)", chosen, info.model)
        return chosen


def _ggml_library(lib_dir: Path) -> ctypes.CDLL:
    """libggml, the library that registers backends, as libllama loaded it.

    Wheels hold copies, not links, so libggml.so and libggml.so.0 are two files: opening the wrong one
    would load a second ggml with its own, empty, backend registry. The copy already mapped into the
    process (by `import llama_cpp`) is the one to open; the same file gives the same handle."""
    mapped = _mapped_paths("libggml.so")
    candidates = mapped + [lib_dir / n for n in ("libggml.so.0", "libggml.so", "libggml.dylib", "ggml.dll")]
    for path in candidates:
        if path.exists():
            lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            lib.ggml_backend_reg_count.restype = ctypes.c_size_t
            lib.ggml_backend_reg_count.argtypes = []
            lib.ggml_backend_load_all_from_path.restype = None
            lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
            return lib
    raise RankdistillError(
        f"{lib_dir}: no libggml shared library; llama-cpp-python looks broken, reinstall it"
    )


def main(argv: list[str] | None = None) -> None:
    """llama-cpp-python's server (`python -m llama_cpp.server`) with the right CPU backend loaded."""
    import sys

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        chosen = load_cpu_backend()
    except RankdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"llama.cpp CPU backend: {chosen}", file=sys.stderr, flush=True)
    import runpy

    sys.argv = ["llama_cpp.server", *(sys.argv[1:] if argv is None else argv)]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
