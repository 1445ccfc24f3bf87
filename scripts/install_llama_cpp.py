"""Build and install llama-cpp-python so that one install runs on every x86-64 CPU with AVX2.

`make install` runs this before installing rankdistill. The build machine's CPU says nothing about the
CPU the library will run on (a virtual environment outlives the machine it was built on, CI and users
have other CPUs), so nothing is built for the CPU at hand:

- ``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS``: the CPU backend is one shared library per
  micro-architecture; at start-up ggml scores each against the CPU (CPUID) and loads the best
  (`rankdistill.llm.llamacpp_cpu` points it at them and logs the choice);
- only the variants that matter for machines with AVX2 are built (`VARIANTS`), about half of upstream's
  x86 list: the others are pre-AVX2 CPUs or near-duplicates, and each variant costs a full compile of
  the CPU kernels (the whole list took about as long again);
- the multimodal library (mtmd) is not built: nothing here uses it.

``--native`` builds the opposite for comparison (``GGML_NATIVE=ON``: this CPU only) into ``--target``;
`benchmarks/llama_cpp_build.py` runs both builds on the same prompts.

The llama-cpp-python version is pinned (`VERSION`): the variant list is edited in its vendored
llama.cpp, and the edit checks that it found every line it expects.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

VERSION = "0.3.36"
# haswell: AVX2 (Zen 1-3, Intel 4th-10th gen client); alderlake: AVX-VNNI without AVX-512 (Intel 12th gen+);
# skylakex / cascadelake / icelake: AVX-512 servers without / with VNNI / with VBMI+VNNI;
# zen4: AVX512-BF16 (Zen 4/5, Cooper Lake); sapphirerapids: AMX.
VARIANTS = ("haswell", "alderlake", "skylakex", "cascadelake", "icelake", "zen4", "sapphirerapids")
PORTABLE_ARGS = [
    "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON",
    "-DGGML_CPU_ALL_VARIANTS=ON",
    # relative to the install prefix: <site-packages>/llama_cpp/lib beside libggml, where the loader
    # looks (typed STRING: as an untyped PATH, CMake would make it absolute against the build folder)
    "-DGGML_BACKEND_DIR:STRING=llama_cpp/lib",
    "-DLLAVA_BUILD=OFF",
]
NATIVE_ARGS = ["-DGGML_NATIVE=ON", "-DLLAVA_BUILD=OFF"]
VARIANT_LINE = re.compile(r"^(\s*)ggml_add_cpu_backend_variant\(([\w.]+)")


def log(msg: str) -> None:
    print(f"[install_llama_cpp] {msg}", flush=True)


def fetch_sdist(python: str, work: Path) -> Path:
    """The llama-cpp-python source distribution from the package index, unpacked under `work`."""
    src = work / f"llama_cpp_python-{VERSION}"
    if (src / "pyproject.toml").is_file():
        return src
    work.mkdir(parents=True, exist_ok=True)
    archive = work / f"llama_cpp_python-{VERSION}.tar.gz"
    if not archive.is_file():
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(work),
                f"llama-cpp-python=={VERSION}",
            ],
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    return src


def keep_variants(src: Path, keep: tuple[str, ...]) -> None:
    """Comment out the x86 CPU variants not in `keep` in the vendored ggml CMakeLists."""
    path = src / "vendor" / "llama.cpp" / "ggml" / "src" / "CMakeLists.txt"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    in_x86, found, out = False, set(), []
    for line in lines:
        stripped = line.strip()
        compact = stripped.replace(" ", "")
        if compact.startswith('if(GGML_SYSTEM_ARCHSTREQUAL"x86")'):
            in_x86 = True
        elif compact.startswith("elseif(GGML_SYSTEM_ARCH"):
            in_x86 = False
        m = VARIANT_LINE.match(line)
        if in_x86 and m:
            name = m.group(2)
            found.add(name)
            if name not in keep:
                line = f"{m.group(1)}# rankdistill: not built: {stripped}\n"
        out.append(line)
    missing = set(keep) - found
    if missing:
        raise SystemExit(
            f"{path}: no x86 CPU variant(s) {sorted(missing)}; is llama-cpp-python {VERSION} there?"
        )
    path.write_text("".join(out), encoding="utf-8")
    log(f"x86 CPU variants built: {', '.join(keep)} (of {len(found)})")


def installed_variants(python: str) -> tuple[str | None, list[str]]:
    """The llama_cpp version importable by `python` and the CPU variants beside its libraries."""
    code = (
        "import importlib.util, pathlib, importlib.metadata as m\n"
        "spec = importlib.util.find_spec('llama_cpp')\n"
        "assert spec, 'none'\n"
        "lib = pathlib.Path(spec.origin).parent / 'lib'\n"
        "print(m.version('llama_cpp_python'))\n"
        "print(' '.join(sorted(p.name for p in lib.glob('libggml-cpu-*.so'))))\n"
    )
    res = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        return None, []
    version, _, names = res.stdout.partition("\n")
    return version.strip(), names.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="the interpreter to install into")
    ap.add_argument("--work", type=Path, default=Path("build/llama-cpp"), help="download and build folder")
    ap.add_argument("--native", action="store_true", help="build for this CPU only (for the benchmark)")
    ap.add_argument("--target", type=Path, help="install into this folder (pip --target) instead")
    ap.add_argument("--force", action="store_true", help="rebuild even if the same build is installed")
    args = ap.parse_args()

    if not args.native and not args.target and not args.force:
        version, names = installed_variants(args.python)
        want = {f"libggml-cpu-{v}.so" for v in VARIANTS}
        if version == VERSION and want <= set(names):
            log(f"llama-cpp-python {VERSION} with CPU variants already installed; nothing to do")
            return
    src = fetch_sdist(args.python, args.work)
    if args.native:
        cmake_args = NATIVE_ARGS
    else:
        keep_variants(src, VARIANTS)
        cmake_args = PORTABLE_ARGS
    env = {
        **os.environ,
        "CMAKE_ARGS": " ".join(cmake_args),
        "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
    }
    cmd = [args.python, "-m", "pip", "install", "--no-cache-dir", "--force-reinstall", "--no-deps"]
    if args.target:
        if args.target.exists():
            shutil.rmtree(args.target)
        cmd += ["--target", str(args.target)]
    cmd.append(str(src))
    log(
        f"building llama-cpp-python {VERSION} ({'native' if args.native else 'portable'}): {env['CMAKE_ARGS']}"
    )
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    # its pure-Python dependencies (numpy, jinja2, diskcache, typing-extensions), not rebuilt with it
    if not args.target:
        subprocess.run([args.python, "-m", "pip", "install", f"llama-cpp-python=={VERSION}"], check=True)
    log(f"built and installed in {time.perf_counter() - t0:.0f} s")
    if not args.native and not args.target:
        version, names = installed_variants(args.python)
        if version != VERSION or not names:
            raise SystemExit(
                f"llama-cpp-python {version} installed without CPU variants in llama_cpp/lib ({names}); "
                "the build did not place them where rankdistill loads them from"
            )
        log(f"CPU variants in llama_cpp/lib: {' '.join(names)}")


if __name__ == "__main__":
    main()
