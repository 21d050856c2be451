"""
Model loading for the API and the command line: a SPEC (`path/to/file.py:factory` or a
shipped example name) to a float torch module, and the image/array files that go with it
(calibration data, inputs, labels), each checked with a one-line `InputError` naming the
file at fault.
"""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from hashiflex.errors import InputError, ModelError
from hashiflex.progress import Progress


@dataclass
class LoadedModel:
    """A float model ready to quantise; `example` is set for a shipped example."""

    name: str
    module: "object"  # torch.nn.Module
    input_shape: tuple[int, int, int]
    example: "object | None" = None  # examples.ExampleSpec


# Beyond these an input image is a typo (calibration would need gigabytes, then fail).
MAX_INPUT_DIM = 4096
MAX_INPUT_VALUES = 1 << 22


def parse_shape(text: str | tuple | None) -> tuple[int, int, int] | None:
    if text is None or isinstance(text, tuple):
        return text
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"--input-shape '{text}' is not C,H,W")
    if len(dims) != 3 or min(dims) < 1:
        raise InputError(f"--input-shape '{text}' must be three positive numbers C,H,W")
    if max(dims) > MAX_INPUT_DIM or dims[0] * dims[1] * dims[2] > MAX_INPUT_VALUES:
        raise InputError(
            f"--input-shape '{text}' is too large (at most {MAX_INPUT_DIM} per dimension and "
            f"{MAX_INPUT_VALUES} values per image)"
        )
    return dims  # type: ignore[return-value]


def load_model(spec: str, input_shape: tuple[int, int, int] | None = None) -> LoadedModel:
    """`path/to/file.py:factory` or the name of a shipped example."""
    import torch

    from hashiflex.examples import EXAMPLES, load_example

    if spec in EXAMPLES:
        example = EXAMPLES[spec]
        shape = input_shape or example.input_shape
        return LoadedModel(spec, load_example(spec), tuple(shape), example)
    if ":" not in spec:
        raise InputError(
            f"'{spec}' is neither a shipped example ({', '.join(EXAMPLES)}) nor "
            "path/to/file.py:factory"
        )
    path_text, factory_name = spec.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"model file '{path}' does not exist")
    module_spec = importlib.util.spec_from_file_location(f"hashiflex_user_{path.stem}", path)
    assert module_spec is not None and module_spec.loader is not None
    user_module = importlib.util.module_from_spec(module_spec)
    # The file and its factory may import modules beside it (`from mynet import Net`).
    with _directory_on_sys_path(path.resolve().parent):
        try:
            module_spec.loader.exec_module(user_module)
        except Exception as error:  # the user's code: report, don't trace back
            raise ModelError(f"importing '{path}' failed: {type(error).__name__}: {error}")
        factory = getattr(user_module, factory_name, None)
        if not callable(factory):
            raise InputError(f"'{path}' has no function '{factory_name}'")
        try:
            model = factory()
        except Exception as error:
            raise ModelError(f"{spec}() failed: {type(error).__name__}: {error}")
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{spec}() returned a {type(model).__name__}, not a torch nn.Module")
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None) or getattr(user_module, "INPUT_SHAPE", None)
    return LoadedModel(factory_name, model.eval(), tuple(input_shape) if input_shape else None)


@contextmanager
def _directory_on_sys_path(directory: Path) -> Iterator[None]:
    """
    `directory` first on sys.path while a SPEC file loads and its factory runs, as under
    `python file.py`; removed afterwards (the modules imported stay in sys.modules).
    """
    entry = str(directory)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:  # the user's code removed it already
            pass


def load_npy(path: Path | str, what: str) -> np.ndarray:
    """A .npy array, or a one-line InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file '{path}' does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:
        message = " ".join(str(error).split())[:200]
        raise InputError(f"{what} file '{path}' is not a .npy array: {message}")
    if not isinstance(array, np.ndarray):  # an .npz archive (np.load opens those too)
        array.close()
        raise InputError(f"{what} file '{path}' is an .npz archive; expected one .npy array")
    return array


def load_images(path: Path | str, what: str, input_shape: tuple[int, int, int] | None) -> np.ndarray:
    """A float32 NxCxHxW .npy, checked against the network's input shape."""
    return check_images(load_npy(path, what), f"{what} '{path}'", input_shape)


def check_images(array: np.ndarray, what: str, input_shape: tuple[int, int, int] | None) -> np.ndarray:
    """A float NxCxHxW array of images of `input_shape` (if known), as float32."""
    if array.ndim != 4:
        raise InputError(
            f"{what} has shape {list(array.shape)}; expected float32 NxCxHxW (4-D)"
        )
    if input_shape is not None and tuple(array.shape[1:]) != tuple(input_shape):
        raise InputError(
            f"{what} has images of shape {list(array.shape[1:])}; the network takes "
            f"{list(input_shape)} (CxHxW)"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{what} holds {array.dtype}, expected float32 images")
    if array.shape[0] == 0:
        raise InputError(f"{what} holds no images")
    if np.isnan(array).any():
        raise InputError(f"{what} holds NaN values")
    return array.astype(np.float32)


def default_calibration(loaded: LoadedModel, progress: Progress) -> np.ndarray:
    """The example's own training images, else uniform random images in [0, 1)."""
    if loaded.input_shape is None:
        raise InputError(
            "the input shape is unknown: give --input-shape C,H,W or --calib X.npy"
        )
    if loaded.example is not None and loaded.name in ("tiny_cnn", "mobilenetv2_digits"):
        from hashiflex.examples.digits import load_digits_split

        x_train, _, _, _ = load_digits_split(size=loaded.input_shape[1])
        return x_train[:256].numpy()
    progress.say("no --calib given: calibrating on 64 uniform random images in [0, 1)")
    rng = np.random.default_rng(0)
    return rng.random((64, *loaded.input_shape), dtype=np.float32)
