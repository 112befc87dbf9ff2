"""`--set NAME=VALUE`: any field of a frozen config dataclass, from the command line.

The presets hold the papers' values and the small CI ones; `--set` changes
one field of the chosen preset for one run without a new preset, e.g.

    main.py --model mgc --mode train --config tiny --set landmark_warmup_steps=1200 ...

The value is read as the field's declared type (`bool`, `int`, `float`,
`str` or `tuple`; an `object` field, an optional number, takes a number or
`none`); a tuple is written comma-separated (`--set
small_channels=16,32,64`; `--set cascade_scales=` is the empty tuple), its
items as the preset's items are (int or float). A bad name or value is an
`InputError` naming the flag, so the command line prints one line.
"""

import dataclasses
import difflib

from shared.errors import InputError

FLAG = "--set"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
NONE_WORD = "none"
SCALAR_TYPES = {"bool": bool, "int": int, "float": float, "str": str}
# How an error line names what a field of each type takes.
TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
              tuple: "a comma-separated list", object: "a number or none"}
# Fields chosen by a flag of their own (resuming and the checkpoint checks key on them).
PRESET_FLAGS = {"name": "--config"}


def add_set_argument(group, what, example):
  """Adds the repeatable `--set NAME=VALUE` flag (a list, or None when not given).

  `what` names the config in its help, `example` is one `NAME=VALUE` for it.
  """
  group.add_argument(FLAG, action="append", default=None, metavar="NAME=VALUE",
                     help=f"change one field of {what} for this run (repeatable; e.g. "
                          f"{FLAG} {example}; README, \"Training\")")


def _field_type(field):
  """The Python type of a dataclass field (its annotation may be a string)."""
  kind = field.type
  return SCALAR_TYPES.get(kind, tuple if kind == "tuple" else kind)


def _number(text):
  try:
    return int(text)
  except ValueError:
    return float(text)


def parse_value(field, text, current):
  """`text` read as `field`'s type; `current` (the preset's value) types a tuple's items.

  Raises:
    ValueError: `text` is not a value of that type.
  """
  kind = _field_type(field)
  if kind is bool:
    word = text.strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
      raise ValueError(f"expected one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
    return word in TRUE_WORDS
  if kind is tuple:
    items = [item.strip() for item in text.split(",") if item.strip()]
    item_kind = type(current[0]) if current else None
    if item_kind in (int, float, str):
      return tuple(item_kind(item) for item in items)
    return tuple(_number(item) for item in items)
  if kind in (int, float, str):
    return kind(text)
  if kind is object:   # An optional number (e.g. GCNConfig.steps_per_epoch): 'none' or a number.
    return None if text.strip().lower() == NONE_WORD else _number(text)
  raise ValueError(f"fields of type {kind} cannot be set from the command line")


def apply_overrides(config, items, fixed=PRESET_FLAGS, log=None):
  """`config` with each `NAME=VALUE` of `items` applied (later items win).

  Args:
    config: a frozen dataclass instance (a preset, or a checkpoint's config).
    items: strings `NAME=VALUE`, as `--set` collects them (None: none).
    fixed: {field name: its own flag} for the fields `--set` may not change.
    log: when given and `items` is not empty, called with one line naming the
      config and the fields changed (a training command's first line).

  Returns:
    The new config (`config` itself when `items` is empty).

  Raises:
    InputError: an item without `=`, an unknown or fixed name, or a bad value.
  """
  fields = {f.name: f for f in dataclasses.fields(config)}
  changes = {}
  for item in items or ():
    name, sep, text = item.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
      raise InputError(f"{FLAG} {item}: expected NAME=VALUE")
    if name not in fields:
      close = difflib.get_close_matches(name, fields, n=1)
      hint = f" (did you mean {close[0]}?)" if close else ""
      raise InputError(f"{FLAG} {item}: {type(config).__name__} has no field '{name}'{hint}")
    if name in fixed:
      raise InputError(f"{FLAG} {item}: '{name}' is chosen with {fixed[name]}, not {FLAG}")
    try:
      changes[name] = parse_value(fields[name], text, getattr(config, name))
    except ValueError as error:
      wanted = TYPE_WORDS.get(_field_type(fields[name]), "a value of its type")
      raise InputError(f"{FLAG} {item}: '{name}' takes {wanted} ({error})") from None
  changed = dataclasses.replace(config, **changes) if changes else config
  if log is not None and items:
    name = getattr(config, "name", type(config).__name__)
    log(f"config {name}, changed by {FLAG}: {describe_changes(config, changed)}")
  return changed


def describe_changes(before, after, unchanged="none"):
  """'name=value, ...' for the fields in which `after` differs from `before` (`unchanged`
  if none: 'none' for a log line, None for a JSON record)."""
  return ", ".join(f"{f.name}={getattr(after, f.name)}" for f in dataclasses.fields(after)
                   if getattr(before, f.name) != getattr(after, f.name)) or unchanged
