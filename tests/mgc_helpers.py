"""What the MGC test files share: the test config and a first batch (fixtures: conftest.py)."""

from mgc_face import config as config_lib
from mgc_face import data as data_lib

# No landmark-head warm-up (the step tests need the full objective) and a small prior sample.
TEST_CONFIG = config_lib.get_config("tiny").replace(batch_size=1, checkpoint_every=2,
                                                     summary_every=1, image_summary_every=2,
                                                     landmark_warmup_steps=0,
                                                     prior_init_samples=300,
                                                     data_stream=False)
# Checkpoint and resume tests train single-view: it compiles in about half the time.
SINGLE_VIEW = TEST_CONFIG.replace(multiview=False)


def first_batch(dataset, batch_size=1):
  ds, _ = data_lib.make_dataset(dataset, "train", batch_size, shuffle=False, repeat=False,
                                report=False)
  return next(iter(ds))


def run_main(argv, capsys):
  """main.main(argv) -> (exit code, stdout, stderr)."""
  import main as main_module
  code = main_module.main(argv)
  captured = capsys.readouterr()
  return code, captured.out, captured.err
