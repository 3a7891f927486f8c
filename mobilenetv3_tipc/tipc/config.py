"""The one TIPC config reader.

Upstream TIPC configs are ``key:value`` lines read by line number; here they are read by
key and by meaning, so the Step6 (32-line), PaddleClas (51-line) and this project's
layouts all work and line order does not matter:

* the value is everything after the **first** ``:``; key and value are trimmed;
* ``=====name=====`` starts section ``name``; blank, ``#`` and ``##`` lines are skipped;
  a UTF-8 byte-order mark and CRLF line ends are ignored;
* ``a|b|c`` lists alternatives (:func:`alternatives`), ``mode=v|mode=v`` gives a value
  per MODE (:func:`mode_value`), ``null`` or an empty value drops the flag (:func:`is_null`);
* keys mean the same in every spelling (:func:`norm_key`, :data:`ALIASES`): ``--use-gpu``,
  ``--use_gpu`` and ``-o Global.use_gpu`` are all ``use_gpu``.

Every error names ``FILE:LINE`` (:class:`ConfigError`).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.cli import str2bool

SECTION_RE = re.compile(r"^=+\s*([A-Za-z0-9_]*)\s*=+$")
MODE_ITEM_RE = re.compile(r"^([A-Za-z0-9_]*(?:train|infer))=(.*)$")

# canonical name -> other spellings (after norm_key) that mean the same parameter
ALIASES: dict[str, tuple[str, ...]] = {
    "enable_mkldnn": ("use_mkldnn",),
    "cpu_threads": ("cpu_num_threads", "cpu_math_library_num_threads", "threads"),
    "use_tensorrt": ("use_trt",),
    "precision": ("use_fp16",),
    "model_dir": ("inference_model_dir",),
    "img_path": ("infer_imgs", "image_dir"),
    "pretrained": ("pretrained_model",),
    "auto_cast": ("autocast",),
    "pipeline": ("pipline",),
}
_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}



# upstream keys this harness refuses, with the reason (by norm_key name)
REFUSED_KEYS = {
    "use_onnx": "PaddleClas predict_cls.py's ONNX switch; this project's ONNX chain is test_paddle2onnx.sh",
}


class ConfigError(Exception):
    """A config problem, worded ``FILE:LINE: message`` (or ``FILE: message``)."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int
    section: str

    @property
    def name(self) -> str:
        """Canonical parameter name of the key."""
        return canonical(self.key)

    @property
    def is_flag(self) -> bool:
        return self.key.startswith("-")


def norm_key(key: str) -> str:
    """``-o Global.use_gpu`` / ``--use-gpu`` / ``use_gpu`` -> ``use_gpu``."""
    text = key.strip()
    if text.startswith("-o "):
        text = text[3:].strip()
    text = text.lstrip("-")
    text = text.rsplit(".", 1)[-1]
    return text.replace("-", "_").lower()


def canonical(key: str) -> str:
    name = norm_key(key)
    return _CANONICAL.get(name, name)


def is_null(value: str | None) -> bool:
    return value is None or value.strip() in ("", "null")


def mode_value(value: str, mode: str) -> str:
    """The value for MODE of ``lite_train_lite_infer=5|whole_train_whole_infer=90``.

    A value is a per-mode map only when every ``|`` item is ``<mode>=...`` with the mode
    name ending in ``train`` or ``infer``; any other value is returned unchanged. A MODE
    the map does not list gives ``""`` (the flag is dropped, as upstream).
    """
    items = value.split("|")
    matches = [MODE_ITEM_RE.match(item.strip()) for item in items]
    if not value or not all(matches):
        return value
    for match in matches:
        assert match is not None
        if match.group(1) == mode:
            return match.group(2).strip()
    return ""


def alternatives(value: str) -> list[str]:
    """``a|b|c`` -> ``[a, b, c]``; a null value -> ``[]``."""
    if is_null(value):
        return []
    return [item.strip() for item in value.split("|")]


def unquote(value: str) -> str:
    """Strip one pair of surrounding quotes; ``null`` means empty."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return "" if text == "null" else text


class Config:
    """A parsed config: :class:`Entry` per ``key:value`` line, in file order."""

    def __init__(self, path: Path, entries: list[Entry], sections: dict[str, int]) -> None:
        self.path = path
        self.entries = entries
        self.sections = sections  # name -> line of its header

    @classmethod
    def load(cls, path: str | Path) -> Config:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: config file not found or not readable ({exc.strerror})") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None
        entries: list[Entry] = []
        sections: dict[str, int] = {}
        section = ""
        errors = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            header = SECTION_RE.match(stripped)
            if header:
                section = header.group(1)
                if section in sections:
                    errors.append(f"{path}:{lineno}: section {section} again (first at line {sections[section]})")
                sections[section] = lineno
                continue
            key, sep, value = stripped.partition(":")
            if not sep or not key.strip():
                errors.append(f"{path}:{lineno}: malformed line (expected key:value): {stripped}")
                continue
            entries.append(Entry(key.strip(), value.strip(), lineno, section))
        if errors:
            raise ConfigError("\n".join(errors))
        return cls(path, entries, sections)

    # ------------------------------------------------------------------ lookups

    def where(self, entry: Entry | None = None) -> str:
        return f"{self.path}:{entry.line}" if entry is not None else str(self.path)

    def error(self, entry: Entry | None, message: str) -> ConfigError:
        return ConfigError(f"{self.where(entry)}: {message}")

    def unsupported(self, entry: Entry | None, why: str) -> ConfigError:
        """The one refusal wording: ``FILE:LINE: <key> is not supported: <why>``.

        An upstream key with a known reason (:data:`REFUSED_KEYS`) gets that reason instead of ``why``.
        """
        if entry is None:
            return ConfigError(f"{self.path}: {why}")
        why = REFUSED_KEYS.get(norm_key(entry.key), why)
        return self.error(entry, f"{entry.key} is not supported: {why}")

    def in_section(self, section: str | None) -> list[Entry]:
        return [e for e in self.entries if section is None or e.section == section]

    def entry(self, key: str, section: str | None = None) -> Entry | None:
        """The first entry whose key is exactly KEY (in SECTION when given)."""
        for e in self.in_section(section):
            if e.key == key:
                return e
        return None

    def find(self, name: str, section: str | None = None, flag: bool | None = None) -> Entry | None:
        """The entry whose key *means* NAME (see :func:`canonical`); two of them are an error."""
        want = canonical(name)
        found = [e for e in self.in_section(section)
                 if e.name == want and (flag is None or e.is_flag == flag) and e.key != "null"]
        if len(found) > 1:
            raise self.error(found[1], f"{found[1].key} means {want} like line {found[0].line}; keep one")
        return found[0] if found else None

    def get(self, name: str, default: str | None = None, section: str | None = None) -> str | None:
        e = self.entry(name, section) or self.find(name, section)
        return e.value if e is not None else default

    def require(self, name: str, why: str, section: str | None = None) -> Entry:
        e = self.entry(name, section) or self.find(name, section)
        if e is None:
            where = f" in section {section}" if section else ""
            raise ConfigError(f"{self.path}: missing key '{name}'{where} ({why})")
        return e

    def require_section(self, section: str, why: str) -> None:
        if section not in self.sections:
            raise ConfigError(f"{self.path}: no ==={section}=== section header ({why})")

    def flag(self, entry: Entry) -> bool:
        """A True/False value, or a FILE:LINE error."""
        return parse_bool(entry.value, self.where(entry), entry.key)


def parse_bool(value: str, where: str = "", key: str = "value") -> bool:
    """:func:`mobilenetv3_tipc.cli.str2bool` (the one boolean vocabulary, infer.py's too), or a FILE:LINE error."""
    try:
        return str2bool(unquote(value))
    except argparse.ArgumentTypeError:
        raise ConfigError(f"{where}: {key} must be True or False, got '{value}'") from None
