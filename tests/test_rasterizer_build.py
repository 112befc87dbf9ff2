"""The kernel build: cached, safe with concurrent builders, falls back to
portable flags, clear without a compiler or when every flag set fails."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from shared.render import rasterizer

ROOT = Path(__file__).resolve().parent.parent
BUILD = ("import sys; sys.path.insert(0, %r); import shared.render.rasterizer as r; "
         "print(r.library_path()); r.load()" % str(ROOT))


def _env(cache, **extra):
  env = dict(os.environ, FACE3D_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="2")
  env.update(extra)
  return env


def test_two_processes_build_once_and_both_load(tmp_path):
  procs = [subprocess.Popen([sys.executable, "-c", BUILD], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  paths = {o[0].strip().splitlines()[-1] for o in outs}
  assert len(paths) == 1
  libs = list(tmp_path.rglob("*.so"))
  assert [p.name for p in libs] == ["rasterizer_op.so"]  # No stray temporary files.
  builds = sum("building the tensorflow-graphics CPU kernel" in o[1] for o in outs)
  assert builds == 1


def test_missing_compiler_is_one_clear_line(tmp_path):
  code = ("import sys; sys.path.insert(0, %r)\n"
          "from shared.errors import InputError\nimport shared.render.rasterizer as r\n"
          "try:\n  r.library_path()\nexcept InputError as e:\n  print('ERR', e)\n" % str(ROOT))
  out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path, CXX="no-such-g++"),
                       capture_output=True, text=True, timeout=300)
  lines = [line for line in out.stdout.splitlines() if line.startswith("ERR")]
  assert len(lines) == 1 and "no C++ compiler 'no-such-g++' found" in lines[0]


# Renders a shaded icosphere through shared.render.renderer; saves image, depth and ids.
RENDER = """
import sys, json; sys.path.insert(0, %r)
import numpy as np, tensorflow as tf, trimesh
import shared.render.rasterizer as r
from shared.render import renderer as render
from shared.model.camera import Camera
sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.5)
v = tf.constant(np.asarray(sphere.vertices, np.float32)[None])
f = np.asarray(sphere.faces, np.int32)
colour = tf.constant(np.abs(np.asarray(sphere.vertex_normals, np.float32))[None])
out = render.render(v, f, colour, Camera(focal=300.0, image_size=96, distance=10.0))
np.savez(sys.argv[1], image=out.image.numpy(), depth=out.depth.numpy(),
         ids=out.triangle_ids.numpy())
print(json.dumps(r.build_info(r.library_path())))
""" % str(ROOT)


def _render(out_file, env):
  run = subprocess.run([sys.executable, "-c", RENDER, str(out_file)], env=env,
                       capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  return np.load(out_file), json.loads(run.stdout.strip().splitlines()[-1])


def test_fallback_flags_build_and_render_the_same_image(tmp_path):
  # The normal build (the user's cache, built at install); then a fresh cache
  # where an impossible flag makes the first flag set fail.
  normal, normal_info = _render(tmp_path / "normal.npz", dict(os.environ))
  forced_env = _env(tmp_path / "cache", FACE3D_KERNEL_FAST_EXTRA_FLAGS="-mno-such-flag")
  forced, forced_info = _render(tmp_path / "forced.npz", forced_env)
  assert forced_info["flag_set"] != "fast"
  assert forced_info["failed"][0]["flag_set"] == "fast"
  assert "-mno-such-flag" in forced_info["failed"][0]["error"]
  assert normal_info["flag_set"] in {"fast", forced_info["flag_set"]}
  assert list((tmp_path / "cache").rglob("build.json"))
  assert (normal["ids"] >= 0).sum() > 1000  # The sphere covers many pixels.
  np.testing.assert_array_equal(forced["ids"], normal["ids"])
  np.testing.assert_allclose(forced["depth"], normal["depth"], rtol=0, atol=1e-5)
  np.testing.assert_allclose(forced["image"], normal["image"], rtol=0, atol=1e-5)


FAKE_COMPILER = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "fakec++ 1.0"; exit 0; fi
echo "x.h:1:2: warning: something harmless" >&2
echo "x.h:3:4: error: the real problem" >&2
echo "x.h:5:6: error: a consequence" >&2
echo "compilation terminated." >&2
exit 1
"""


def test_every_flag_set_failing_shows_the_first_error_line(tmp_path):
  fake = tmp_path / "fakec++"
  fake.write_text(FAKE_COMPILER)
  fake.chmod(0o755)
  code = ("import sys; sys.path.insert(0, %r)\n"
          "from shared.errors import InputError\nimport shared.render.rasterizer as r\n"
          "try:\n  r.library_path()\nexcept InputError as e:\n  print('ERR', e)\n" % str(ROOT))
  out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path, CXX=str(fake)),
                       capture_output=True, text=True, timeout=300)
  lines = [line for line in out.stdout.splitlines() if line.startswith("ERR")]
  assert len(lines) == 1, out.stdout + out.stderr
  assert "x.h:3:4: error: the real problem" in lines[0]
  tried = ", ".join(name for name, _ in rasterizer.flag_sets())  # No fast set on AVX512-FP16.
  assert tried in {"fast, fast-no-avx512fp16, portable", "fast-no-avx512fp16, portable"}
  assert tried in lines[0]
  assert not list(tmp_path.rglob("*.so"))


def test_fast_set_left_out_on_avx512_fp16_cpus(monkeypatch):
  monkeypatch.delenv(rasterizer.FAST_EXTRA_FLAGS_ENV, raising=False)
  monkeypatch.setattr(rasterizer, "_cpu_signature", lambda: "flags\t: sse avx512f avx512_fp16")
  assert [name for name, _ in rasterizer.flag_sets()] == ["fast-no-avx512fp16", "portable"]
  monkeypatch.setattr(rasterizer, "_cpu_signature", lambda: "flags\t: sse avx512f avx512_bf16")
  assert [name for name, _ in rasterizer.flag_sets()] == ["fast", "fast-no-avx512fp16", "portable"]
  monkeypatch.setattr(rasterizer, "_cpu_signature", lambda: "flags\t: sse avx512_fp16")
  monkeypatch.setenv(rasterizer.FAST_EXTRA_FLAGS_ENV, "-mavx512fp16")
  sets = rasterizer.flag_sets()
  assert sets[0] == ("fast", rasterizer.FLAG_SETS[0][1] + ("-mavx512fp16",))


def test_cpu_model_reads_the_model_name_line(monkeypatch):
  monkeypatch.setattr(rasterizer, "_cpu_signature",
                      lambda: "flags\t: sse avx2\nmodel name\t: AMD EPYC 9654 96-Core Processor")
  assert rasterizer.cpu_model() == "AMD EPYC 9654 96-Core Processor"
  monkeypatch.setattr(rasterizer, "_cpu_signature", lambda: "aarch64")   # No /proc/cpuinfo.
  assert rasterizer.cpu_model() == "unknown"


def test_cache_key_is_the_same_for_tensorflow_in_another_folder():
  import tensorflow as tf
  folder = tf.sysconfig.get_lib()
  flags = [f"-I{folder}/include", f"-L{folder}", "-l:libtensorflow_framework.so.2"]
  moved = [flag.replace(folder, "/elsewhere/venv/tensorflow") for flag in flags]

  class Moved:  # The same TensorFlow installed in another virtual environment.
    __version__ = tf.__version__
    sysconfig = type("sysconfig", (), {"get_lib": staticmethod(
        lambda: "/elsewhere/venv/tensorflow")})

  kernel_dir = rasterizer._kernel_dir()
  sets = rasterizer.flag_sets()
  assert (rasterizer._build_key(tf, kernel_dir, flags, "g++ 12", sets)
          == rasterizer._build_key(Moved, kernel_dir, moved, "g++ 12", sets))
  assert (rasterizer._build_key(tf, kernel_dir, flags, "g++ 12", sets)
          != rasterizer._build_key(tf, kernel_dir, flags + ["-DOTHER"], "g++ 12", sets))
