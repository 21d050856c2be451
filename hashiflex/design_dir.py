"""
The design directory that `hashiflex compile` writes and every later command reads:
`design.json` (the manifest: shapes, formats, ports, file list), IR text files, and the
atomic writes that make a file or a whole directory appear complete or not at all.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hashiflex.errors import DesignError, InputError


@contextmanager
def atomic_file(path: Path | str, binary: bool = False) -> Iterator[io.IOBase]:
    """Write to a temporary file beside `path` and move it into place only on success."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"'{path}' is a directory, expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as stream:
            yield stream
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Build a directory beside `path`; replace `path` with it only when complete."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"'{path}' exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def print_ir(module, path: Path | str) -> None:
    """Write IR text, atomically: the file appears complete or not at all."""
    from xdsl.printer import Printer

    with atomic_file(path) as stream:
        Printer(stream=stream).print_op(module)
        stream.write("\n")


def parse_ir(path: Path | str):
    """Parse and verify an IR file, reporting errors as one-line InputErrors."""
    from xdsl.parser import Parser
    from xdsl.utils.exceptions import DiagnosticException, ParseError

    from hashiflex.tools.registry import make_context

    path = Path(path)
    if not path.is_file():
        raise InputError(f"IR file '{path}' does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"'{path}' is not an IR text file (it is not UTF-8)")
    try:
        module = Parser(make_context(), text, str(path)).parse_module()
        module.verify()
    except ParseError as error:
        raise InputError(f"'{path}' does not parse: {str(error).strip().splitlines()[-1].strip()}")
    except DiagnosticException as error:
        raise InputError(f"'{path}' does not verify: {str(error).strip().splitlines()[0]}")
    return module


DESIGN_FORMAT = "hashiflex-design/1"


@dataclass
class Design:
    """A compiled design directory and what `design.json` says of it."""

    path: Path
    manifest: dict

    @property
    def report(self) -> dict:
        return json.loads((self.path / "report.json").read_text())

    def file(self, key: str) -> Path:
        return self.path / self.manifest["files"][key]


def design_manifest(name: str, top: str, network_input, npu, ports: list[dict], sv_files,
                    pixels_per_cycle: int = 1) -> dict:
    """
    `design.json`: what later commands need without parsing IR: the input's shape and
    number format (to quantise and pack pixels), the NPU's size and widths (to load
    weights), the top's ports (for the harness) and the files of the design.
    `network_input` is the po2.act type of the image, `npu` the po2.npu_linear op.
    """
    classes, features = npu.weights.get_shape()
    fmt = network_input.fmt
    return {
        "format": DESIGN_FORMAT,
        "name": name,
        "top": top,
        "input_shape": list(network_input.dims),
        "input_format": {"bits": fmt.bits, "signed": fmt.signed, "frac": fmt.frac},
        "pixels_per_cycle": pixels_per_cycle,
        "classes": classes,
        "features": features,
        "logit_bits": npu.output.type.fmt.bits,
        "logits_frac": npu.output.type.fmt.frac,
        "npu_weight_bits": npu.weight_bits.value.data,
        "npu_bias_bits": npu.bias_bits.value.data,
        "ports": ports,
        "files": {
            "sv": [f"rtl/{f.name}" for f in sv_files],
            "po2": "model.po2.mlir",
            "hw": "model.hw.mlir",
            "params": "params.npz",
            "report": "report.json",
        },
    }


def open_design(path: Path | str) -> Design:
    """A design directory, checked: its manifest parses, is of this version, lists only files present."""
    path = Path(path)
    manifest_path = path / "design.json"
    if not path.is_dir():
        raise DesignError(f"'{path}' is not a directory (expected a design written by `hashiflex compile`)")
    if not manifest_path.is_file():
        raise DesignError(f"'{path}' is not a compiled design: it has no design.json")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise DesignError(f"'{manifest_path}' is corrupt: {error}")
    if manifest.get("format") != DESIGN_FORMAT:
        raise DesignError(f"'{path}' was written by another version (format {manifest.get('format')!r})")
    for key, rel in manifest["files"].items():
        for item in rel if isinstance(rel, list) else [rel]:
            if not (path / item).is_file():
                raise DesignError(f"design '{path}' is incomplete: {item} is missing")
    return Design(path, manifest)
