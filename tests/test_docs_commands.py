"""The commands written in README.md and docs/*.md use flags that exist, and the files
they name exist.

Every fenced code block, and every one-line inline code span that runs `python`,
is read; a line (with its `\\` continuations) that runs
`main.py` is split into its `--model` and `--mode` (`a|b` alternatives each
checked; `--model` defaults to mgc) and every `--flag` in it, bracketed optional
ones included, must be an option of that model and mode's parser
(`main.build_parser`).  A line that runs `tools/X.py` or `bench/X.py` may use
only flags that the script's source, or a module that adds flags for scripts
(`FLAG_SOURCES`), names.  So a renamed or removed flag cannot stay in the docs.
"""

import re
from pathlib import Path

import main

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
FENCE = "```"
INLINE = re.compile(r"`([^`]+)`")     # an inline code span within one line
SCRIPT = re.compile(r"(?:^|[\s/])((?:tools|bench)/[a-z_0-9]+\.(?:py|sh))")
# Modules whose functions add flags to the scripts' parsers.
FLAG_SOURCES = ("bench/common.py", "shared/config_overrides.py", "shared/eval/landmark_eval.py")


def code_lines(path):
  """(line number, text) of each command in `path`'s fenced blocks (continuations joined,
  comments dropped) and of each one-line inline code span that runs `python`."""
  out, inside, pending, start = [], False, "", 0
  for number, line in enumerate(path.read_text().splitlines(), 1):
    if line.strip().startswith(FENCE):
      inside, pending = not inside, ""
      continue
    if not inside:
      out += [(number, span) for span in INLINE.findall(line) if "python " in span]
      continue
    text = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
    if not pending:
      start = number
    if text.rstrip().endswith("\\"):
      pending += text.rstrip()[:-1] + " "
      continue
    out.append((start, pending + text))
    pending = ""
  return out


def main_commands():
  """(where, models, modes, flags) of every documented main.py command with a --mode."""
  found = []
  for path in DOCS:
    for number, text in code_lines(path):
      if "main.py" not in text:
        continue
      tokens = text.split("main.py", 1)[1].split()
      values = {}
      for key in ("--model", "--mode"):
        if key in tokens and tokens.index(key) + 1 < len(tokens):
          values[key] = tokens[tokens.index(key) + 1].strip("[]").split("|")
      if "--mode" not in values:
        continue
      flags = sorted(set(FLAG.findall(" ".join(tokens))) - {"--help"})
      found.append((f"{path.relative_to(REPO)}:{number}", values.get("--model", ["mgc"]),
                    values["--mode"], flags))
  return found


def test_documented_commands_use_existing_flags():
  commands = main_commands()
  assert len(commands) >= 20, "the docs should hold many main.py commands"
  options = {}
  problems = []
  for where, models, modes, flags in commands:
    for model in models:
      for mode in modes:
        if mode not in main.MODEL_MODES.get(model, ()) + main.SHARED_MODES:
          problems.append(f"{where}: --model {model} has no mode {mode}")
          continue
        if (model, mode) not in options:
          parser, _ = main.build_parser(model, mode)
          options[model, mode] = set(parser._option_string_actions)
        problems += [f"{where}: --model {model} --mode {mode} takes no {flag}"
                     for flag in flags if flag not in options[model, mode]]
  assert not problems, "\n".join(problems)


def script_commands():
  """(where, script path, flags) of every documented tools/ or bench/ command."""
  found = []
  for path in DOCS:
    for number, text in code_lines(path):
      match = SCRIPT.search(text)
      if match is None or "main.py" in text:
        continue
      rest = text[match.end():]
      found.append((f"{path.relative_to(REPO)}:{number}", match.group(1),
                    sorted(set(FLAG.findall(rest)) - {"--help"})))
  return found


def test_documented_scripts_exist_and_use_their_flags():
  commands = script_commands()
  assert len(commands) >= 20, "the docs should hold many tools/ and bench/ commands"
  shared_flags = set()
  for source in FLAG_SOURCES:
    shared_flags |= set(FLAG.findall((REPO / source).read_text()))
  shared_flags.add("--set")
  problems = []
  for where, script, flags in commands:
    if not (REPO / script).is_file():
      problems.append(f"{where}: {script} does not exist")
      continue
    known = set(FLAG.findall((REPO / script).read_text())) | shared_flags
    problems += [f"{where}: {script} takes no {flag}" for flag in flags if flag not in known]
  assert not problems, "\n".join(problems)


REPO_PATH = re.compile(r"(?<![\w/.])((?:shared|mgc_face|gcn_face|tools|bench|tests|docs)/"
                       r"[A-Za-z0-9_/]+\.(?:py|md|sh|npz|cc|txt))")


def test_files_the_docs_name_exist():
  """Every repository path the docs name (`shared/...py`, `docs/...md`, ...) is a file."""
  missing = [f"{doc.relative_to(REPO)}:{number}: {name}"
             for doc in DOCS
             for number, line in enumerate(doc.read_text().splitlines(), 1)
             for name in REPO_PATH.findall(line) if not (REPO / name).exists()]
  assert not missing, "\n".join(missing)
