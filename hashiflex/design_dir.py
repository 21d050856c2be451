"""
The design directory that `hashiflex compile` writes and every later command reads:
`design.json` (the manifest: shapes, formats, ports, file list), IR text files, and the
atomic writes that make a file or a whole directory appear complete or not at all.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hashiflex.errors import DesignError, InputError


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OS error creating `path` or its temporary sibling, as an InputError naming `path`."""
    try:
        yield
    except OSError as error:
        raise InputError(f"cannot write '{path}': {error.strerror or error}") from None


@contextmanager
def atomic_file(path: Path | str, binary: bool = False) -> Iterator[io.IOBase]:
    """Write to a temporary file beside `path` and move it into place only on success."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"'{path}' is a directory, expected a file name")
    with _naming(path):
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
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if path.exists():
            # a fresh name for the old directory: never a name the user may already have
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            path.rename(old / path.name)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


MARKER = ".hashiflex-design"
MARKER_TEXT = "A design directory written by `hashiflex compile`: the next compile may replace it.\n"


def is_design_directory(path: Path) -> bool:
    """Whether `path` was written by `hashiflex compile` (its marker, or a design.json of ours)."""
    if (path / MARKER).is_file():
        return True
    try:
        manifest = json.loads((path / "design.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("format", "")).startswith("hashiflex-design/")


def check_replaceable(path: Path | str, force: bool = False) -> None:
    """
    `compile --out DIR` replaces DIR whole: allowed for a design directory, an empty
    directory or a new path; anything else (a user's folder) only with `force`.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise InputError(f"'{path}' exists and is not a directory; give a new path for the design")
    if force or is_design_directory(path) or not any(path.iterdir()):
        return
    raise InputError(
        f"'{path}' is not a design directory written by hashiflex and is not empty: refusing "
        "to replace it (give a new path, or --force to replace it with everything in it)"
    )


def check_output_path(out: Path | str | None, inputs: dict[str, Path | str | None]) -> None:
    """
    Refuse an output path that is one of the inputs, or lies inside an input directory
    (a design), or contains an input (`compile --out` around the SPEC file): writing it
    would destroy what the command reads. `inputs` maps each input's option to its path.
    """
    if out is None:
        return
    target = Path(out).resolve()
    for option, given in inputs.items():
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source or (source.is_dir() and target.is_relative_to(source)):
            raise InputError(f"the output '{out}' would overwrite the input {option} '{given}'")
        if source.is_relative_to(target) and target.is_dir():
            raise InputError(f"the output '{out}' contains the input {option} '{given}'")


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
        files = self.manifest["files"]
        if key == "hw" and key not in files:
            raise DesignError(f"'{self.path}' has no hw IR: compile it with --emit-hw-ir")
        return self.path / files[key]


def design_manifest(name: str, top: str, network_input, npu, ports: list[dict], sv_files,
                    pixels_per_cycle: int = 1, hw_file: str | None = "model.hw.mlir") -> dict:
    """
    `design.json`: what later commands need without parsing IR: the input's shape and
    number format (to quantise and pack pixels), the NPU's size and widths (to load
    weights), the top's ports (for the harness) and the files of the design.
    `network_input` is the po2.act type of the image, `npu` the po2.npu_linear op.
    `hw_file`: the hw IR file (None: not written, `compile` without --emit-hw-ir).
    """
    classes, features = npu.weight_matrix.shape
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
        "npu_weight_bits": npu.weight_bits,
        "npu_bias_bits": npu.bias_bits,
        "ports": ports,
        "files": {
            "sv": [f"rtl/{f.name}" for f in sv_files],
            "po2": "model.po2.mlir",
            **({"hw": hw_file} if hw_file is not None else {}),
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
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise DesignError(f"'{manifest_path}' is corrupt: {error}")
    if not isinstance(manifest, dict) or manifest.get("format") != DESIGN_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DesignError(f"'{path}' was written by another version (format {found!r})")
    check_manifest(manifest, manifest_path)
    for key, rel in manifest["files"].items():
        for item in rel if isinstance(rel, list) else [rel]:
            if not (path / item).is_file():
                raise DesignError(f"design '{path}' is incomplete: {item} is missing")
    report_path = path / manifest["files"]["report"]
    try:
        report = json.loads(report_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise DesignError(f"'{report_path}' is corrupt: {error}")
    check_report(report, report_path)
    return Design(path, manifest)


# -- the schema of design.json and report.json -------------------------------------------
#
# A design directory is data, and may come from someone else: every value later commands
# use is checked here, before any of it reaches generated code (port and module names go
# into the C++ harness), a file path (only names inside the directory) or an allocation
# (shapes and widths bounded). The SystemVerilog files themselves are code, though: they
# run in Verilator (docs/architecture.md, "Trust").

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_DIM = 1 << 16
MAX_PORT_WIDTH = 1 << 20


def _int(value, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def check_manifest(m: dict, where: Path) -> None:
    """design.json against its schema: one DesignError naming the first field at fault."""

    def bad(field: str, rule: str):
        return DesignError(f"'{where}' is not a valid design manifest: {field} {rule}")

    for key in ("name", "top"):
        if not (isinstance(m.get(key), str) and IDENTIFIER.fullmatch(m[key])):
            raise bad(key, "must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    shape = m.get("input_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(_int(d, 1, MAX_DIM) for d in shape)):
        raise bad("input_shape", f"must be three integers C, H, W in 1..{MAX_DIM}")
    fmt = m.get("input_format")
    if not (isinstance(fmt, dict) and _int(fmt.get("bits"), 1, 32)
            and isinstance(fmt.get("signed"), bool) and _int(fmt.get("frac"), -64, 64)):
        raise bad("input_format", "must be {bits: 1..32, signed: bool, frac: -64..64}")
    for key, lo, hi in (("classes", 1, MAX_DIM), ("features", 1, MAX_DIM), ("logit_bits", 1, 64),
                        ("logits_frac", -128, 128), ("npu_weight_bits", 1, 32),
                        ("npu_bias_bits", 1, 64)):
        if not _int(m.get(key), lo, hi):
            raise bad(key, f"must be an integer in {lo}..{hi}")
    ports = m.get("ports")
    if not isinstance(ports, list) or not ports:
        raise bad("ports", "must be a non-empty list")
    names = set()
    for port in ports:
        if not (isinstance(port, dict) and isinstance(port.get("name"), str)
                and IDENTIFIER.fullmatch(port["name"])):
            raise bad("ports", f"holds {str(port)[:80]!r}: a port name must be an identifier")
        if not _int(port.get("width"), 1, MAX_PORT_WIDTH) or port.get("dir") not in ("in", "out"):
            raise bad("ports", f"port '{port['name']}' needs a width in 1..{MAX_PORT_WIDTH} and dir in/out")
        if port["name"] in names:
            raise bad("ports", f"name '{port['name']}' twice")
        names.add(port["name"])
    for needed in ("clk", "rst", "in_valid", "in_data", "out_valid", "out_class", "out_logits"):
        if needed not in names:
            raise bad("ports", f"lack '{needed}'")
    files = m.get("files")
    if not isinstance(files, dict):
        raise bad("files", "must be an object")
    sv = files.get("sv")
    if not (isinstance(sv, list) and sv and all(
            isinstance(f, str) and f.startswith("rtl/") and FILE_NAME.fullmatch(f[4:])
            and f.endswith(".sv") for f in sv)):
        raise bad("files.sv", "must list rtl/NAME.sv files inside the design")
    for key in ("po2", "hw", "params", "report"):
        if key == "hw" and key not in files:  # the hw IR is written only with --emit-hw-ir
            continue
        if not (isinstance(files.get(key), str) and FILE_NAME.fullmatch(files[key])):
            raise bad(f"files.{key}", "must be a file name inside the design")


REPORT_NUMBERS = ("cycles_per_image", "pipeline_cycles_per_image", "npu_cycles_per_image",
                  "latency_cycles", "clock_mhz", "images_per_second", "adders", "register_bits")


def check_report(report, where: Path) -> None:
    """report.json: an object whose figures (those commands print) are finite numbers."""
    if not isinstance(report, dict):
        raise DesignError(f"'{where}' is not a valid report: not a JSON object")
    for key in REPORT_NUMBERS:
        value = report.get(key)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and value >= 0):
            raise DesignError(f"'{where}' is not a valid report: {key} must be a finite number >= 0")
