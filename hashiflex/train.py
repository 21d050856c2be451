"""`hashiflex train`: Po2 quantisation-aware training of a user's float model, and its checkpoint.

    train("net.py:factory", "x.npy", "y.npy", "net.pt", epochs=10)   -> TrainResult
    load_checkpoint("net.pt")                                          -> (name, QuantizedModel)

Why a command: QAT recovers what post-training rounding loses, but until now only the
example scripts ran it. The flow: load the float SPEC, hold out ``val_fraction`` of the data
(a seeded permutation), post-training quantise (adaptive rounding, frontend/ptq.py) as the
starting point, then fine-tune the BN-folded weights of the fake-quant model with
straight-through gradients (frontend/quant.py: the same numbers as the hardware), Adam with a
cosine schedule and distillation from the float model. After every epoch the validation
accuracy is measured with the *integer* golden model on the exported po2 IR; the best
epoch (the PTQ start counts as epoch 0) is the checkpoint. Ctrl-C writes the best so far.

The checkpoint is a SPEC for `import`, `compile` and `golden`: it holds the snapped
fake-quant state (float64: every weight and bias exactly its integer value at its scale), the
source SPEC and the quantisation options it was built with, the accuracies `train` printed
and a digest of the exported integer graph. Loading rebuilds the fake-quant model from the
source SPEC, loads the state and checks the digest, so a checkpoint that would not rebuild
the same network (another version, another source) is refused instead of compiled wrong.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashiflex.errors import InputError, ModelError
from hashiflex.progress import QUIET, Progress

CHECKPOINT_FORMAT = "hashiflex-po2-checkpoint"
CHECKPOINT_VERSION = 2  # 2: the digest is over the po2 IR (was: layer records)
CALIB_IMAGES = 256


@dataclass
class TrainResult:
    path: Path
    float_accuracy: float  # % on the validation split
    ptq_accuracy: float
    po2_accuracy: float  # of the checkpoint (best epoch), golden model on the po2 IR
    best_epoch: int
    val_images: int
    seconds: float
    interrupted: bool = False


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def check_labels(labels: np.ndarray, count: int, classes: int | None) -> np.ndarray:
    """Integer class labels 0..classes-1, one per image, at least two classes present."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"labels have shape {list(labels.shape)}; expected a 1-D array of ints")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) \
                and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise InputError(f"labels hold {labels.dtype} values that are not whole numbers; "
                             "expected integer class labels")
    if len(labels) != count:
        raise InputError(f"there are {len(labels)} labels for {count} images")
    if labels.min() < 0:
        raise InputError(f"labels must be >= 0, found {int(labels.min())}")
    if classes is not None and labels.max() >= classes:
        raise InputError(f"label {int(labels.max())} does not exist: the model has {classes} "
                         f"outputs (labels 0..{classes - 1})")
    if len(np.unique(labels)) < 2:
        raise InputError(f"the labels hold a single class ({int(labels[0])}); training needs "
                         "at least two")
    return labels.astype(np.int64)


def resolve_options(*, act_bits=None, exp_bits=None, prune=None, npu_weight_bits=None,
                    ptq=None) -> dict:
    """The quantisation options as QuantOptions keywords, None taking QuantOptions' default
    (the one place defaults live), checked in range (one-line errors)."""
    from hashiflex import api
    from hashiflex.frontend import quant
    from hashiflex.frontend.ptq import PTQ_METHODS

    given = dict(act_bits=act_bits, exp_bits=exp_bits, prune=prune, weight_bits=npu_weight_bits,
                 ptq=ptq)
    defaults = quant.QuantOptions(**{k: v for k, v in given.items() if v is not None})
    api.check_quant_options(defaults.act_bits, defaults.exp_bits, defaults.prune,
                            defaults.weight_bits)
    if defaults.ptq not in PTQ_METHODS:
        raise InputError(f"--ptq must be one of {', '.join(PTQ_METHODS)}, got '{defaults.ptq}'")
    return dict(act_bits=defaults.act_bits, exp_bits=defaults.exp_bits, prune=defaults.prune,
                weight_bits=defaults.weight_bits, ptq=defaults.ptq)


def check_training_options(epochs: int, lr: float, batch_size: int) -> None:
    if epochs < 0 or batch_size < 1 or not (lr > 0 and math.isfinite(lr)):
        raise InputError("--epochs must be >= 0, --batch-size >= 1 and --lr a positive number")


def load_labelled_data(spec: str, data, labels, input_shape=None):
    """(LoadedModel, images float32 NxCxHxW, labels int64 N) of a float SPEC and labelled data
    (paths or arrays), checked: finite images of the model's shape, one whole-number label per
    image naming an output, at least two classes (one-line InputErrors, nothing written)."""
    from hashiflex import api

    if is_checkpoint_spec(spec):
        raise InputError(f"'{spec}' is already a Po2 checkpoint; give its source SPEC")
    loaded = api.load_model(spec, api.parse_shape(input_shape))
    images = api.load_images(data, "data", loaded.input_shape) if not isinstance(data, np.ndarray) \
        else api.check_images(data, "data", loaded.input_shape)
    if not np.isfinite(images).all():
        raise InputError(f"data '{data}' holds NaN or infinite values")
    raw_labels = api.load_npy(labels, "labels") if not isinstance(labels, np.ndarray) else labels
    return loaded, images, check_labels(raw_labels, len(images), _model_classes(loaded.module))


def split(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of a seeded permutation."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    n_val = int(round(count * val_fraction))
    if n_val < 1 or count - n_val < 1:
        raise InputError(f"{count} images cannot be split with --val-fraction {val_fraction}")
    perm = np.random.default_rng(seed).permutation(count)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _model_classes(model) -> int | None:
    import torch.nn as nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def int_accuracy(quantized, x, y) -> float:
    """% correct of the golden model on the exported po2 IR (what the hardware does)."""
    return float((quantized.predict(x) == np.asarray(y)).mean()) * 100


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / max(total, 1))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def qat(model, quantized, x_train, y_train, *, epochs: int, lr: float, batch_size: int,
        seed: int, distill: float = 0.5, temperature: float = 2.0,
        evaluate=None, on_best=None, progress: Progress = QUIET) -> tuple[int, float]:
    """Fine-tune `quantized.fake_quant` in place; returns (best epoch, best score).

    ``evaluate(quantized) -> score`` runs after every epoch (and once before, for epoch 0);
    ``on_best(epoch, score)`` is called when the score improves (strictly), and the best
    state is restored at the end (also on Ctrl-C, which is then re-raised).
    """
    import torch

    from hashiflex.frontend.quant import qat_step

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    fq = quantized.fake_quant.float()
    params = [p for p in fq.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    batches = math.ceil(len(y_train) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * batches))
    best_epoch, best_score = 0, evaluate(quantized.refresh()) if evaluate else 0.0
    best_state = copy.deepcopy(fq.state_dict())
    if on_best:
        on_best(0, best_score)
    model.eval()
    tty = getattr(progress.stream, "isatty", lambda: False)() and progress.enabled
    try:
        for epoch in range(1, epochs + 1):
            fq.train()
            perm = torch.randperm(len(y_train), generator=gen)
            total, seen = 0.0, 0
            for b, start in enumerate(range(0, len(y_train), batch_size)):
                idx = perm[start:start + batch_size]
                xb, yb = x_train[idx], y_train[idx]
                loss = qat_step(fq, model, opt, sched, xb, yb, distill, temperature)
                total, seen = total + loss * len(idx), seen + len(idx)
                if tty:
                    print(f"\r[hashiflex] epoch {epoch}/{epochs} {_bar(b + 1, batches)} "
                          f"loss {total / seen:.4f}", end="", file=progress.stream, flush=True)
            fq.eval()
            score = evaluate(quantized.refresh()) if evaluate else -total / seen
            if tty:
                print("\r", end="", file=progress.stream)
            mark = ""
            if score > best_score:
                best_epoch, best_score = epoch, score
                best_state = copy.deepcopy(fq.state_dict())
                mark = " (best)"
                if on_best:
                    on_best(epoch, score)
            progress.say(f"epoch {epoch}/{epochs} {_bar(epoch, epochs)} loss {total / seen:.4f} "
                         f"val {score:.2f} %{mark}")
    finally:
        fq.load_state_dict(best_state)
        fq.eval()
        quantized.refresh()
    return best_epoch, best_score


def train(spec: str, data, labels, out, *, epochs: int = 10, lr: float = 1e-4,
          batch_size: int = 64, seed: int = 0, val_fraction: float = 0.2,
          input_shape=None, act_bits: int | None = None, exp_bits: int | None = None,
          prune: float | None = None, npu_weight_bits: int | None = None,
          ptq: str | None = None, calib=None,
          progress: Progress = QUIET) -> TrainResult:
    """Po2 QAT of SPEC on (data, labels); writes the checkpoint `out` (see the module doc)."""
    import torch

    from hashiflex import api
    from hashiflex.frontend import quant

    options = resolve_options(act_bits=act_bits, exp_bits=exp_bits, prune=prune,
                              npu_weight_bits=npu_weight_bits, ptq=ptq)
    act_bits, exp_bits, prune = options["act_bits"], options["exp_bits"], options["prune"]
    npu_weight_bits, ptq = options["weight_bits"], options["ptq"]
    out = Path(out)
    check_training_options(epochs, lr, batch_size)
    if out.suffix != ".pt":
        raise InputError(f"the checkpoint '{out}' must end in .pt (that makes it a SPEC)")
    loaded, images, y = load_labelled_data(spec, data, labels, input_shape)
    train_idx, val_idx = split(len(images), val_fraction, seed)
    x_t, y_t = torch.from_numpy(images[train_idx]), torch.from_numpy(y[train_idx])
    x_v, y_v = torch.from_numpy(images[val_idx]), y[val_idx]
    calib_x = x_t[:CALIB_IMAGES] if calib is None else torch.from_numpy(
        api.load_images(calib, "calibration data", loaded.input_shape))

    start = time.perf_counter()
    model = loaded.module.eval()
    with torch.no_grad():
        float_acc = float((model(x_v).argmax(1).numpy() == y_v).mean()) * 100
    try:
        with progress.step(f"post-training quantisation of {loaded.name} ({ptq})"), \
                np.errstate(invalid="ignore"):
            quantized = quant.quantize_ptq(model, calib_x, **options)
    except (quant.UnsupportedModelError, quant.ModelShapeError, ValueError) as error:
        raise ModelError(f"quantising {loaded.name} failed: {error}")
    ptq_acc = int_accuracy(quantized, x_v, y_v)
    progress.say(f"float {float_acc:.2f} %, Po2 PTQ {ptq_acc:.2f} % on {len(y_v)} "
                 f"validation images; QAT for {epochs} epochs")
    meta = dict(spec=_source_spec(spec), name=loaded.name,
                input_shape=list(loaded.input_shape), options=options,
                train=dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                           val_fraction=val_fraction, images=len(images)))
    interrupted = False
    try:
        best_epoch, best = qat(model, quantized, x_t, y_t, epochs=epochs, lr=lr,
                               batch_size=batch_size, seed=seed,
                               evaluate=lambda q: int_accuracy(q, x_v, y_v), progress=progress)
    except KeyboardInterrupt:
        interrupted = True
        best = int_accuracy(quantized, x_v, y_v)
        best_epoch = -1
    seconds = time.perf_counter() - start
    meta["accuracy"] = dict(float=float_acc, ptq=ptq_acc, po2=best, val_images=len(y_v),
                            best_epoch=best_epoch)
    meta["seconds"] = seconds
    save_checkpoint(quantized, meta, out)
    result = TrainResult(out, float_acc, ptq_acc, best, best_epoch, len(y_v), seconds,
                         interrupted)
    progress.say(f"float {float_acc:.2f} % -> Po2 {best:.2f} % on {len(y_v)} validation "
                 f"images (PTQ {ptq_acc:.2f} %, best epoch {best_epoch}); wrote {out} "
                 f"in {seconds:.0f} s")
    if interrupted:
        progress.say(f"interrupted: {out} holds the best epoch so far")
        raise KeyboardInterrupt
    return result


def _source_spec(spec: str) -> str:
    """The SPEC as it can be loaded from anywhere: an example name or an absolute path."""
    if ":" in spec and not spec.startswith(("/",)) and Path(spec.rsplit(":", 1)[0]).is_file():
        path, factory = spec.rsplit(":", 1)
        return f"{Path(path).resolve()}:{factory}"
    return spec


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


def network_digest(layers) -> str:
    """sha256 of every integer and format of the exported po2 layer ops (their names,
    types and properties; dense weight tensors as int64 bytes, not printed)."""
    from xdsl.dialects.builtin import DenseIntOrFPElementsAttr

    from hashiflex.dialects.po2 import dense_to_numpy

    h = hashlib.sha256()
    for op in layers:
        h.update(op.name.encode())
        h.update(repr([str(r.type) for r in op.results]).encode())
        for key in sorted(op.properties):
            value = op.properties[key]
            h.update(key.encode())
            if isinstance(value, DenseIntOrFPElementsAttr):
                h.update(np.ascontiguousarray(dense_to_numpy(value), dtype=np.int64).tobytes())
            else:
                h.update(str(value).encode())
    return h.hexdigest()


def save_checkpoint(quantized, meta: dict, out: Path) -> None:
    import torch

    from hashiflex import api

    fq = copy.deepcopy(quantized.fake_quant).double().snap_()
    record = dict(meta, format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                  digest=network_digest(quantized.layers), state=fq.state_dict())
    with api.atomic_file(out, binary=True) as stream:
        torch.save(record, stream)


def is_checkpoint_spec(spec) -> bool:
    return isinstance(spec, (str, Path)) and str(spec).endswith(".pt") and ":" not in str(spec)


def read_checkpoint(path) -> dict:
    """The checkpoint record, or a one-line InputError saying why it is not one."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint '{path}' does not exist")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"'{path}' is not a hashiflex checkpoint: {first}")
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"'{path}' is not a hashiflex checkpoint (written by `hashiflex train`)")
    if record.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"checkpoint '{path}' has version {record.get('version')}; this "
                         f"hashiflex reads version {CHECKPOINT_VERSION}")
    return record


def load_checkpoint(path):
    """(name, QuantizedModel, record) of a `hashiflex train` checkpoint, checked by digest."""
    import torch

    from hashiflex import api
    from hashiflex.frontend import quant

    record = read_checkpoint(path)
    loaded = api.load_model(record["spec"], tuple(record["input_shape"]))
    example = torch.zeros((1, *record["input_shape"]))
    try:
        fq = quant.build_fake_quant(loaded.module, example, quant.QuantOptions(**record["options"]))
        fq.double().load_state_dict(record["state"])
    except (TypeError, RuntimeError, quant.UnsupportedModelError) as error:
        first = str(error).strip().splitlines()[0]
        raise InputError(f"checkpoint '{path}' does not fit its source {record['spec']}: {first}")
    fq.set_quantize(True).eval()
    quantized = quant.QuantizedModel(fq, record["name"])
    if network_digest(quantized.layers) != record["digest"]:
        raise InputError(f"checkpoint '{path}' does not rebuild the network it was trained as "
                         "(another hashiflex version or a changed source model)")
    return record["name"], quantized, record
