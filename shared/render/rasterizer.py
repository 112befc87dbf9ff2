"""Builds, caches and loads tensorflow-graphics' CPU rasterizer kernel.

tensorflow-graphics ships a prebuilt `rasterizer_op.so` that does not load on
current TensorFlow (undefined symbols), but it also ships the kernel's C++
sources (`rendering/kernels/*.cc`).  This module compiles them with g++ and
the `tf.sysconfig` flags, caches the library per TensorFlow version and source
hash, and installs it where tensorflow-graphics looks first
(`tensorflow_graphics.rendering.kernels.gen_rasterizer_op`), so that
`triangle_rasterizer.rasterize(..., backend=CPU)` and our `render` module use
it unchanged.  Our own interpolation op (`kernels/interpolate_op.cc`, see
`shared.render.renderer`) is compiled into the same library; the sources compile in
parallel processes, then link.

The kernel is compiled with the first of `FLAG_SETS` that compiles:

1. `fast`: `-O3 -march=native -ffp-contract=off`, about 1.5x faster than `-O2`
   on the face meshes (bench/render.py), with bit-identical output (no FMA
   contraction, so depths, barycentrics and triangle ids match the `-O2`
   build exactly);
2. `fast-no-avx512fp16`: the same without AVX512-FP16, which TensorFlow's
   bundled Eigen (`PacketMathFP16.h`) cannot compile with g++ 12 on CPUs that
   have it (Sapphire Rapids and later); on those CPUs this set is tried first
   and `fast` is left out (unless extra flags below are given);
3. `portable`: `-O3 -ffp-contract=off` for the compiler's default target.

The set used is recorded in `build.json` beside the library and printed by
`python -m shared.render.rasterizer`.  `FACE3D_KERNEL_FAST_EXTRA_FLAGS` (whitespace
separated) adds flags to the first set only, so a test can force it to fail
(`-mavx512fp16` reproduces the Eigen failure on any x86-64 CPU).

The cache key covers everything that decides what is built: the CPU's model
and feature flags (what `-march=native` compiles for), the sources, the
compiler's version, TensorFlow's flags (its install folder written as `<tf>`,
so virtual environments with the same TensorFlow share one build) and the
whole ordered list of flag sets (with the extra flags), so a cache folder
always holds the first set of that list that compiles with that compiler.

The build is safe when several processes start at once: one takes an
exclusive file lock and builds into a temporary file that is renamed into
place; the others wait on the lock and then load the finished library.
"""

import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

from shared.errors import InputError
from shared.io.paths import cache_dir

KERNEL_SOURCES = ("rasterize_triangles_impl.cc", "rasterize_triangles_op.cc")
KERNEL_HEADERS = ("rasterize_triangles_impl.h",)
# Our own op, built into the same library: barycentric interpolation over the
# rasterized pixels and its gradient (see shared/render/renderer.py).
OWN_SOURCES = (Path(__file__).resolve().parent / "kernels" / "interpolate_op.cc",)
LIBRARY_NAME = "rasterizer_op.so"
SHIM_MODULE = "tensorflow_graphics.rendering.kernels.gen_rasterizer_op"
COMPILER_ENV = "CXX"
DEFAULT_COMPILER = "g++"
COMMON_FLAGS = ("-std=c++17", "-shared", "-fPIC", "-w", "-DUSE_OZONE")
# Tried in order; the first that compiles and links is kept (see module doc).
FLAG_SETS = (
    ("fast", ("-O3", "-march=native", "-ffp-contract=off")),
    ("fast-no-avx512fp16", ("-O3", "-march=native", "-mno-avx512fp16", "-ffp-contract=off")),
    ("portable", ("-O3", "-ffp-contract=off")),
)
FAST_EXTRA_FLAGS_ENV = "FACE3D_KERNEL_FAST_EXTRA_FLAGS"
FP16_FEATURE = "avx512_fp16"   # /proc/cpuinfo's name of AVX512-FP16.
BUILD_INFO_NAME = "build.json"
COMPILER_TIMEOUT_S = 30
CPUINFO = Path("/proc/cpuinfo")
CPUINFO_KEYS = ("model name", "flags")

_loaded = None


def _kernel_dir():
  spec = importlib.util.find_spec("tensorflow_graphics")
  if spec is None or spec.origin is None:
    raise InputError("tensorflow-graphics is not installed; run: pip install --no-deps "
                     "-r requirements-no-deps.txt (tensorflow-graphics==2021.12.3)")
  return Path(spec.origin).parent / "rendering" / "kernels"


def _compiler():
  compiler = os.environ.get(COMPILER_ENV, DEFAULT_COMPILER)
  if shutil.which(compiler) is None:
    raise InputError(
        f"no C++ compiler '{compiler}' found: the rasterizer kernel must be built "
        "once from tensorflow-graphics' sources; install g++ (e.g. apt-get install g++) "
        f"or set {COMPILER_ENV}")
  return compiler


def _cpu_signature():
  """The CPU's model and feature flags (what `-march=native` compiles for)."""
  try:
    lines = CPUINFO.read_text().splitlines()
  except OSError:
    return platform.machine() + platform.processor()
  wanted = [line for line in lines if line.split(":")[0].strip() in CPUINFO_KEYS]
  return "\n".join(sorted(set(wanted)))


def _sources(kernel_dir):
  """The .cc files compiled into the library: tfg's kernel, then ours."""
  return [kernel_dir / name for name in KERNEL_SOURCES] + list(OWN_SOURCES)


def _kernel_files(kernel_dir):
  """Every file the build reads: the sources, then tfg's header."""
  return _sources(kernel_dir) + [kernel_dir / name for name in KERNEL_HEADERS]


def _cpuinfo_values(key):
  """The values of `_cpu_signature`'s lines for `key` (one of CPUINFO_KEYS)."""
  lines = [line.split(":", 1) for line in _cpu_signature().splitlines()]
  return [parts[-1].strip() for parts in lines if parts[0].strip() == key]


def _cpu_has(feature):
  """Whether /proc/cpuinfo's `flags` list `feature` (False where it cannot be read)."""
  return any(feature in value.split() for value in _cpuinfo_values("flags"))


def cpu_model():
  """The CPU's model name from /proc/cpuinfo ("unknown" where it cannot be read)."""
  return next(iter(_cpuinfo_values("model name")), "unknown")


def flag_sets():
  """The `(name, flags)` sets to try in order, with the extra first-set flags.

  On a CPU with AVX512-FP16 the `fast` set is left out (it cannot compile there with g++ 12,
  and costs a failed compile of about 7 s on 2 cores), unless extra flags are given.
  """
  extra = tuple(os.environ.get(FAST_EXTRA_FLAGS_ENV, "").split())
  (name, flags), rest = FLAG_SETS[0], FLAG_SETS[1:]
  if not extra and _cpu_has(FP16_FEATURE):
    return rest
  return ((name, flags + extra),) + rest


def _compiler_version(compiler):
  """The compiler's `--version` banner (first line), part of the cache key."""
  try:
    out = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                         timeout=COMPILER_TIMEOUT_S)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise InputError(f"{compiler}: the C++ compiler does not run ({e})") from None
  return (out.stdout.strip().splitlines() or ["unknown version"])[0]


def _portable_flags(tf_module, flags):
  """TensorFlow's flags with its install folder written as `<tf>`: the same TensorFlow version
  in another virtual environment builds the same library, so it shares the cache entry."""
  folder = str(Path(tf_module.sysconfig.get_lib()))
  return [flag.replace(folder, "<tf>") for flag in flags]


def _build_key(tf_module, kernel_dir, tf_flags, compiler_version, sets):
  tf_flags = _portable_flags(tf_module, tf_flags)
  digest = hashlib.sha256()
  digest.update(_cpu_signature().encode())
  for path in _kernel_files(kernel_dir):
    digest.update(path.read_bytes())
  digest.update(compiler_version.encode())
  digest.update(json.dumps([list(COMMON_FLAGS), list(tf_flags),
                            [[name, list(flags)] for name, flags in sets]]).encode())
  return f"tf-{tf_module.__version__}-{digest.hexdigest()[:12]}"


def first_error_line(stderr):
  """The compiler's first `error:` line (not a warning, not the last line)."""
  lines = [line.strip() for line in stderr.splitlines() if line.strip()]
  for line in lines:
    if re.search(r"(^|: )(fatal )?error:", line):
      return line
  return lines[-1] if lines else "unknown error"


def _compile_and_link(compiler, flags, link_flags, sources, output, work_dir):
  """Compiles the sources to objects in parallel processes, then links `output`.

  Raises:
    InputError: naming the first failing step and the compiler's first error line.
  """
  with tempfile.TemporaryDirectory(dir=work_dir) as objects:
    compile_flags = [f for f in flags if f != "-shared"]
    jobs = []
    for index, source in enumerate(sources):
      obj = Path(objects) / f"{index}_{source.stem}.o"
      jobs.append((source, obj, subprocess.Popen(
          [compiler] + compile_flags + ["-c", str(source), "-o", str(obj)],
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    steps = [(source, job.communicate()[1], job.returncode) for source, _, job in jobs]
    if all(code == 0 for _, _, code in steps):
      link = subprocess.run([compiler] + flags + [str(obj) for _, obj, _ in jobs] +
                            ["-o", output] + link_flags, capture_output=True, text=True)
      steps = [("linking", link.stderr, link.returncode)]
    for step, stderr, code in steps:
      if code != 0:
        raise InputError(f"{step}: building the rasterizer kernel failed: "
                         f"{first_error_line(stderr)}")


def _build(compiler, sets, tf_flags, link_flags, sources, target, out_dir):
  """Builds `target` with the first flag set that compiles; writes `build.json`.

  Raises:
    InputError: every set failed; names the last (most portable) set's first
      error line and the sets tried.
  """
  failures = []
  for name, flags in sets:
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    all_flags = list(COMMON_FLAGS) + list(flags) + list(tf_flags)
    try:
      _compile_and_link(compiler, all_flags, link_flags, sources, tmp, out_dir)
    except InputError as error:
      os.unlink(tmp)
      failures.append({"flag_set": name, "error": str(error)})
      if len(failures) < len(sets):
        print(f"[rasterizer] flag set '{name}' failed ({error}); trying the next",
              file=sys.stderr)
      continue
    info = {"flag_set": name, "flags": list(flags), "compiler": compiler,
            "compiler_version": _compiler_version(compiler), "failed": failures}
    info_tmp = out_dir / (BUILD_INFO_NAME + ".tmp")
    info_tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(info_tmp, out_dir / BUILD_INFO_NAME)
    os.replace(tmp, target)  # Last, so an existing library always has its build.json.
    return
  raise InputError(f"{failures[-1]['error']} (flag sets tried: "
                   + ", ".join(f["flag_set"] for f in failures) + ")")


def library_path():
  """Returns the cached library path for this TensorFlow, building it if needed.

  Returns:
    `Path` of a loadable `rasterizer_op.so`.

  Raises:
    InputError: no compiler, missing sources, or the build failed.
  """
  import tensorflow as tf
  kernel_dir = _kernel_dir()
  missing = [path for path in _kernel_files(kernel_dir) if not path.exists()]
  if missing:
    raise InputError(f"{missing[0]}: kernel source missing ({len(missing)} file(s) in all; "
                     "reinstall tensorflow-graphics==2021.12.3 and this package)")
  tf_flags = list(tf.sysconfig.get_compile_flags())
  link_flags = list(tf.sysconfig.get_link_flags())
  compiler = _compiler()
  sets = flag_sets()
  key = _build_key(tf, kernel_dir, tf_flags + link_flags, _compiler_version(compiler), sets)
  out_dir = cache_dir() / "rasterizer" / key
  out_dir.mkdir(parents=True, exist_ok=True)
  target = out_dir / LIBRARY_NAME
  if target.exists():
    return target
  with open(out_dir / ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if target.exists():  # Built by another process while we waited.
      return target
    print(f"[rasterizer] building the tensorflow-graphics CPU kernel into {out_dir} "
          "(once per TensorFlow version)...", file=sys.stderr)
    _build(compiler, sets, tf_flags, link_flags, _sources(kernel_dir), target, out_dir)
  return target


def build_info(library):
  """The `build.json` recorded beside `library` (flag set used, compiler), or {}."""
  try:
    return json.loads((Path(library).parent / BUILD_INFO_NAME).read_text())
  except (OSError, ValueError):
    return {}


def load():
  """Builds (if needed) and loads the kernel; installs the tfg import shim.

  Returns:
    The op module, with `rasterize_triangles(vertices [V,4] clip space,
    triangles [T,3] int32, image_width, image_height, num_layers,
    face_culling_mode) -> (barycentrics, triangle_ids, z_buffer)`.
  """
  global _loaded
  if _loaded is not None:
    return _loaded
  import tensorflow as tf
  ops = tf.load_op_library(str(library_path()))
  shim = types.ModuleType(SHIM_MODULE)
  shim.rasterize_triangles = ops.rasterize_triangles
  sys.modules[SHIM_MODULE] = shim
  _loaded = ops
  return ops


def cpu_backend():
  """Returns tfg's CPU rasterization backend module, with our kernel loaded."""
  load()
  from tensorflow_graphics.rendering.kernels import rasterization_backend
  return rasterization_backend


if __name__ == "__main__":
  # `python -m shared.render.rasterizer` builds the kernel ahead of time.
  from shared import quiet
  quiet.setup()
  try:
    path = library_path()
    info = build_info(path)
    print(path)
    print(f"flag set: {info.get('flag_set', 'unknown')} "
          f"({' '.join(info.get('flags', []))}; {info.get('compiler_version', '')})")
  except InputError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
