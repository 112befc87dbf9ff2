"""Builds, caches and loads tensorflow-graphics' CPU rasterizer kernel.

tensorflow-graphics ships a prebuilt `rasterizer_op.so` that does not load on
current TensorFlow (undefined symbols), but it also ships the kernel's C++
sources (`rendering/kernels/*.cc`).  This module compiles them with g++ and
the `tf.sysconfig` flags, caches the library per TensorFlow version and source
hash, and installs it where tensorflow-graphics looks first
(`tensorflow_graphics.rendering.kernels.gen_rasterizer_op`), so that
`triangle_rasterizer.rasterize(..., backend=CPU)` and our `render` module use
it unchanged.  Our own interpolation op (`kernels/interpolate_op.cc`, see
`shared.render`) is compiled into the same library; the sources compile in
parallel processes, then link.

The kernel is compiled with `-O3 -march=native -ffp-contract=off`: about 1.5x
faster than `-O2` on the face meshes (bench/render.py), with bit-identical
output (no FMA contraction, so depths, barycentrics and triangle ids match the
`-O2` build exactly).  Since `-march=native` code is specific to the CPU, the
cache key includes the CPU's model and feature flags.

The build is safe when several processes start at once: one takes an
exclusive file lock and builds into a temporary file that is renamed into
place; the others wait on the lock and then load the finished library.
"""

import fcntl
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

from shared.errors import InputError
from shared.paths import cache_dir

KERNEL_SOURCES = ("rasterize_triangles_impl.cc", "rasterize_triangles_op.cc")
KERNEL_HEADERS = ("rasterize_triangles_impl.h",)
# Our own op, built into the same library: barycentric interpolation over the
# rasterized pixels and its gradient (see shared/render.py).
OWN_SOURCES = (Path(__file__).resolve().parent / "kernels" / "interpolate_op.cc",)
LIBRARY_NAME = "rasterizer_op.so"
SHIM_MODULE = "tensorflow_graphics.rendering.kernels.gen_rasterizer_op"
COMPILER_ENV = "CXX"
DEFAULT_COMPILER = "g++"
BASE_FLAGS = ("-std=c++17", "-shared", "-fPIC", "-O3", "-march=native", "-ffp-contract=off",
              "-w", "-DUSE_OZONE")
CPUINFO = Path("/proc/cpuinfo")
CPUINFO_KEYS = ("model name", "flags")

_loaded = None


def _kernel_dir():
  spec = importlib.util.find_spec("tensorflow_graphics")
  if spec is None or spec.origin is None:
    raise InputError("tensorflow-graphics is not installed; run: pip install "
                     "tensorflow-graphics==2021.12.3")
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


def _build_key(tf_module, kernel_dir, flags):
  digest = hashlib.sha256()
  digest.update(_cpu_signature().encode())
  for path in _kernel_files(kernel_dir):
    digest.update(path.read_bytes())
  digest.update(" ".join(flags).encode())
  return f"tf-{tf_module.__version__}-{digest.hexdigest()[:12]}"


def _compile_and_link(compiler, flags, link_flags, sources, output, work_dir):
  """Compiles the sources to objects in parallel processes, then links `output`.

  Raises:
    InputError: naming the first failing step and the compiler's last line.
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
        last = (stderr.strip().splitlines() or ["unknown error"])[-1]
        raise InputError(f"{step}: building the rasterizer kernel failed: {last}")


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
  flags = list(BASE_FLAGS) + list(tf.sysconfig.get_compile_flags())
  link_flags = list(tf.sysconfig.get_link_flags())
  key = _build_key(tf, kernel_dir, flags + link_flags)
  out_dir = cache_dir() / "rasterizer" / key
  out_dir.mkdir(parents=True, exist_ok=True)
  target = out_dir / LIBRARY_NAME
  if target.exists():
    return target
  with open(out_dir / ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if target.exists():  # Built by another process while we waited.
      return target
    compiler = _compiler()
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    print(f"[rasterizer] building the tensorflow-graphics CPU kernel into {out_dir} "
          "(once per TensorFlow version)...", file=sys.stderr)
    try:
      _compile_and_link(compiler, flags, link_flags, _sources(kernel_dir), tmp, out_dir)
    except InputError:
      os.unlink(tmp)
      raise
    os.replace(tmp, target)
  return target


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
  # `python -m shared.rasterizer` builds the kernel ahead of time.
  try:
    print(library_path())
  except InputError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
