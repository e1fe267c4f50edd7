"""Folding of a network: ``PE`` and ``SIMD`` per compute layer.

A folding is a dict ``{compute_layer_name: {"PE": int, "SIMD": int}}``. It comes from a dict,
a JSON file, the model's ``net.meta["folding"]`` (FINN's folding of the BNN-PYNQ networks), or
:func:`auto_folding`, which picks the cheapest folding that meets a target rate.

Rules (checked by :func:`check_folding`, errors name the layer):

* ``1 <= PE <= O`` rounded up to a power of two (PE need not divide ``O`` and may exceed it:
  rows are padded; :func:`pe_limit`) and ``1 <= SIMD <= K`` (SIMD need not divide ``K``: the
  vector is padded);
* for a convolution, ``SIMD`` divides the input channels (window vectors are ``[ky][kx][c]``),
  unless the entry says ``"order": "chw"``: then the vector is ``[c][ky][kx]`` (each input
  channel's 2-D window contiguous, for a per-channel 2-D popcount stage or a shared-result
  filter bank, SPEC §9) and any ``SIMD <= K`` works; a multiple of ``kh * kw`` keeps every
  chunk to whole 2-D windows;
* an entry may name the MVTU's chunk stage, ``"stage"`` (a key of
  :data:`bnnhw.plan.stages.CHUNK_STAGES`): ``"kernel_popcount"`` (and
  ``"kernel_popcount_rom"``, which holds its own weights) need ``"order": "chw"`` and ``SIMD``
  a multiple of ``kh * kw``. Default: ``"popcount"`` (``"dot"`` for a multi-bit layer).

* a binary convolution followed by a threshold may say ``"datapath": "hardwired"``: the
  layer fully unrolled with constant weights (:class:`bnnhw.plan.hardwired.HardwiredPlan`),
  all ``O`` outputs of a whole ``K``-bit window per cycle, so ``PE`` and ``SIMD`` are ``O``
  and ``K`` (they may be omitted, and are filled in); optional ``"adders"`` (a key of
  :data:`bnnhw.plan.hardwired.ADDER_FORMS`), ``"lowering"`` (one of
  :data:`bnnhw.plan.hardwired.LOWERINGS`, e.g. ``"counters"`` for six-input LUTs) and
  ``"sharing"`` (a result-sharing mode,
  ``"exact"``, ``"similar:D"``, ``"approx:D"``; SPEC §9). Every hardwired layer that shares
  uses the same mode (one sharing plan per core).

Cycles of one layer per image: ``ceil(O / PE) * ceil(K / SIMD) * H_out * W_out`` (the MVTU
computes one output pixel per vector).
"""

import math
from pathlib import Path

from ..errors import ModelError
from ..model.schema import strict_json
from ..model.layers import COMPUTE_TYPES, BinaryDense, MultibitConv2d

__all__ = ["load_folding", "check_folding", "default_folding", "auto_folding",
           "layer_cycles", "folding_cycles", "pe_limit", "apply_sharing", "sharing_mode",
           "DATAPATHS"]

#: The datapaths of a compute layer: ``"mvtu"`` (folded, default) and ``"hardwired"``.
DATAPATHS = ("mvtu", "hardwired")


def _compute_infos(net):
    return [i for i in net.infos if isinstance(i.layer, COMPUTE_TYPES)]


def _pixels(info):
    shape = info.output_shape
    return 1 if len(shape) == 1 else shape[1] * shape[2]


def layer_cycles(info, pe, simd):
    """Cycles per image of compute layer ``info`` folded ``pe`` x ``simd``."""
    layer = info.layer
    return -(-layer.out_channels // pe) * -(-layer.fan_in // simd) * _pixels(info)


def folding_cycles(net, folding):
    """``{layer_name: cycles per image}`` for a checked folding."""
    return {i.name: layer_cycles(i, folding[i.name]["PE"], folding[i.name]["SIMD"])
            for i in _compute_infos(net)}


#: Element orders of a convolution's input vector (see :class:`bnnhw.hw.network.NetworkCore`):
#: ``"hwc"`` ``[ky][kx][c]``, the pixel stream's order (default); ``"chw"`` ``[c][ky][kx]``,
#: each input channel's 2-D window contiguous (SPEC §9's per-channel 2-D kernels).
ORDERS = ("hwc", "chw")
#: The largest folding file read.
MAX_FOLDING_BYTES = 16 << 20


def pe_limit(out_channels):
    """The largest PE of a layer with ``out_channels`` rows: ``O`` rounded up to a power of two.

    PE may exceed O (FINN folds LFC's fc3, O=10, with PE=16: rows are padded), but not
    without bound: a PE beyond this only adds idle lanes (and a ``PE: 1000000000`` would ask
    for a billion of them).
    """
    return 1 << (int(out_channels) - 1).bit_length()


def _simd_ok(layer, simd):
    return isinstance(layer, BinaryDense) or layer.in_channels % simd == 0


def check_folding(net, folding):
    """Validate ``folding`` for ``net`` and return it normalised (plain ints, every layer).

    Raises :class:`~bnnhw.errors.ModelError` naming the layer and the value.
    """
    if not isinstance(folding, dict):
        raise ModelError(f"folding must be a dict of {{layer: {{'PE': int, 'SIMD': int}}}}, "
                         f"not {type(folding).__name__}")
    infos = _compute_infos(net)
    names = {i.name for i in infos}
    unknown = sorted(set(folding) - names)
    if unknown:
        raise ModelError(f"folding names layer {unknown[0]!r}, which is not a compute layer of "
                         f"{net.name!r} (compute layers: {', '.join(sorted(names))})")
    out = {}
    for info in infos:
        layer = info.layer
        if info.name not in folding:
            raise ModelError(f"folding has no entry for layer {info.name!r}")
        entry = folding[info.name]
        if not isinstance(entry, dict):
            raise ModelError(f"layer {info.name!r}: folding must be {{'PE': int, 'SIMD': int}}, "
                             f"not {entry!r}")
        extra = sorted(set(entry) - {"PE", "SIMD", "order", "stage", "datapath", "adders",
                                     "lowering", "sharing"})
        if extra:
            raise ModelError(f"layer {info.name!r}: unknown folding key {extra[0]!r}")
        datapath = entry.get("datapath", "mvtu")
        if not isinstance(datapath, str) or datapath not in DATAPATHS:
            raise ModelError(f"layer {info.name!r}: datapath must be 'mvtu' or 'hardwired', "
                             f"not {datapath!r}")
        if datapath == "hardwired":
            out[info.name] = _check_hardwired(net, info, entry)
            continue
        for key in ("adders", "lowering", "sharing"):
            if key in entry:
                raise ModelError(f"layer {info.name!r}: folding key {key!r} is for "
                                 f"\"datapath\": \"hardwired\" layers")
        order = entry.get("order", "hwc")
        if not isinstance(order, str) or order not in ORDERS:
            raise ModelError(f"layer {info.name!r}: folding order must be 'hwc' or 'chw', "
                             f"not {order!r}")
        if order == "chw" and isinstance(layer, BinaryDense):
            raise ModelError(f"layer {info.name!r}: folding order 'chw' is for convolutions "
                             f"only")
        vals = {}
        for key, top in (("PE", pe_limit(layer.out_channels)), ("SIMD", layer.fan_in)):
            if key not in entry:
                raise ModelError(f"layer {info.name!r}: folding needs {key}")
            v = entry[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ModelError(f"layer {info.name!r}: {key} must be a positive integer, "
                                 f"not {v!r}")
            if v > top and key == "PE":
                why = (f"its {top} output channels" if top == layer.out_channels else
                       f"its {layer.out_channels} output channels rounded up to a power of two")
                raise ModelError(f"layer {info.name!r}: PE must be at most {top} ({why}), "
                                 f"not {v}")
            if v > top:
                raise ModelError(f"layer {info.name!r}: SIMD must be at most the {top} inputs "
                                 f"(K), not {v}")
            vals[key] = int(v)
        if order == "hwc" and not _simd_ok(layer, vals["SIMD"]):
            raise ModelError(f"layer {info.name!r}: SIMD must divide the {layer.in_channels} "
                             f"input channels, not {vals['SIMD']}")
        if order == "chw":
            # Only named when not the default, so that FINN-style foldings stay as given.
            vals["order"] = order
        if "stage" in entry:
            vals["stage"] = _check_stage(info, entry["stage"], order, vals["SIMD"])
        out[info.name] = vals
    return out


def _check_hardwired(net, info, entry):
    """A ``"datapath": "hardwired"`` folding entry, normalised."""
    from ..model.layers import BinaryConv2d
    from .hardwired import ADDER_FORMS
    layer = info.layer
    if not isinstance(layer, BinaryConv2d):
        raise ModelError(f"layer {info.name!r}: the hardwired datapath computes binary "
                         f"convolutions, not a {layer.kind} layer")
    blocks = net.blocks()
    block = next(b for b in blocks if b.name == info.name)
    if block.threshold is None or block.name == blocks[-1].name:
        raise ModelError(f"layer {info.name!r}: the hardwired datapath needs a layer "
                         f"followed by a threshold, before the last layer")
    for key in ("order", "stage"):
        if key in entry:
            raise ModelError(f"layer {info.name!r}: folding key {key!r} is for the MVTU "
                             f"datapath, not a hardwired layer")
    for key, full in (("PE", layer.out_channels), ("SIMD", layer.fan_in)):
        v = entry.get(key, full)
        if isinstance(v, bool) or not isinstance(v, int) or v != full:
            raise ModelError(f"layer {info.name!r}: a hardwired layer computes all "
                             f"{layer.out_channels} outputs of its whole {layer.fan_in}-bit "
                             f"window per cycle: {key} must be {full} (or left out), not {v!r}")
    vals = {"PE": layer.out_channels, "SIMD": layer.fan_in, "datapath": "hardwired"}
    mode = entry.get("sharing")
    if mode is not None:
        from ..errors import InputError
        from ..sharing import parse_mode
        try:
            parse_mode(mode)
        except InputError as e:
            raise ModelError(f"layer {info.name!r}: {e}") from None
        vals["sharing"] = mode
    if "adders" in entry:
        adders = entry["adders"]
        if not isinstance(adders, str) or adders not in ADDER_FORMS:
            raise ModelError(f"layer {info.name!r}: adder form must be one of "
                             f"{', '.join(repr(a) for a in ADDER_FORMS)}, not {adders!r}")
        vals["adders"] = adders
    if "lowering" in entry:
        from .hardwired import LOWERINGS
        lowering = entry["lowering"]
        if not isinstance(lowering, str) or lowering not in LOWERINGS:
            raise ModelError(f"layer {info.name!r}: lowering must be one of "
                             f"{', '.join(repr(a) for a in LOWERINGS)}, not {lowering!r}")
        vals["lowering"] = lowering
    return vals


def sharing_mode(folding):
    """The one result-sharing mode of a checked folding's hardwired layers, or ``None``.

    Raises :class:`~bnnhw.errors.ModelError` when two layers name different modes.
    """
    modes = {name: e["sharing"] for name, e in folding.items() if "sharing" in e}
    if len(set(modes.values())) > 1:
        (a, ma), (b, mb) = sorted(modes.items())[:2]
        raise ModelError(f"hardwired layers share in one mode per core: layer {a!r} says "
                         f"{ma!r}, layer {b!r} says {mb!r}")
    return next(iter(modes.values()), None)


def apply_sharing(net, folding, mode):
    """``folding`` (checked) with sharing ``mode`` on every hardwired layer that names none
    (``bnnhw generate --share MODE``). Raises :class:`~bnnhw.errors.ModelError` when no layer
    is hardwired or a layer names another mode."""
    if mode is None:
        return folding
    hard = [n for n, e in folding.items() if e.get("datapath") == "hardwired"]
    if not hard:
        raise ModelError(f"--share {mode} needs a layer with \"datapath\": \"hardwired\" "
                         f"in the folding (none of {net.name!r}'s layers is hardwired)")
    out = {n: dict(e) for n, e in folding.items()}
    for n in hard:
        out[n].setdefault("sharing", mode)
    out = check_folding(net, out)
    if sharing_mode(out) != mode:
        raise ModelError(f"--share {mode}: the folding's hardwired layers already share "
                         f"in mode {sharing_mode(out)!r}")
    return out


def _check_stage(info, stage, order, simd):
    """A chunk stage named in a folding entry (:data:`bnnhw.plan.stages.CHUNK_STAGES`)."""
    from .stages import CHUNK_STAGES
    layer = info.layer
    if not isinstance(stage, str) or stage not in CHUNK_STAGES:
        raise ModelError(f"layer {info.name!r}: chunk stage must be one of "
                         f"{', '.join(repr(s) for s in CHUNK_STAGES)}, not {stage!r}")
    if (stage == "dot") != isinstance(layer, MultibitConv2d):
        raise ModelError(f"layer {info.name!r}: chunk stage {stage!r} does not compute a "
                         f"{'multi-bit' if isinstance(layer, MultibitConv2d) else 'binary'} "
                         f"layer")
    need = CHUNK_STAGES[stage]["order"]
    if need is not None and order != need:
        raise ModelError(f"layer {info.name!r}: chunk stage {stage!r} needs \"order\": "
                         f"{need!r} in the folding, not {order!r}")
    if stage.startswith("kernel_popcount"):
        taps = layer.kernel[0] * layer.kernel[1]
        if simd % taps:
            raise ModelError(f"layer {info.name!r}: chunk stage {stage!r} needs SIMD a multiple "
                             f"of the {taps} elements of a 2-D kernel, not {simd}")
    return stage


def default_folding(net):
    """A modest folding: ``PE = 1``; ``SIMD`` = the input channels of a convolution (up to 32,
    else their largest divisor below it), ``min(K, 32)`` for a dense layer."""
    out = {}
    for info in _compute_infos(net):
        layer = info.layer
        if isinstance(layer, BinaryDense):
            simd = min(layer.fan_in, 32)
        else:
            simd = max(d for d in range(1, min(layer.in_channels, 32) + 1)
                       if layer.in_channels % d == 0)
        out[info.name] = {"PE": 1, "SIMD": simd}
    return out


def load_folding(net, folding=None):
    """Resolve a folding source for ``net`` and check it.

    Parameters
    ----------
    net : Network
    folding : dict, str, pathlib.Path or None
        A folding dict, a path to a JSON file holding one, or ``None``: ``net.meta["folding"]``
        when the model has one, else :func:`default_folding`.
    """
    if folding is None:
        folding = net.meta.get("folding") or default_folding(net)
    elif isinstance(folding, (str, Path)):
        path = Path(folding)
        try:
            if path.exists() and not path.is_file():
                raise ModelError(f"folding file {str(path)!r} is not a regular file")
            if path.is_file() and path.stat().st_size > MAX_FOLDING_BYTES:
                raise ModelError(f"folding file {str(path)!r} is larger than "
                                 f"{MAX_FOLDING_BYTES:,} bytes")
            text = path.read_text()
        except OSError as e:
            raise ModelError(f"cannot read folding file {str(path)!r}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ModelError(f"folding file {str(path)!r} is not text") from None
        folding = strict_json(text, f"folding file {str(path)!r}")
    folding = check_folding(net, folding)
    sharing_mode(folding)
    return folding


def auto_folding(net, *, images_per_second, clock_hz):
    """The cheapest folding whose every layer meets ``images_per_second`` at ``clock_hz``.

    Each layer independently gets the ``(PE, SIMD)`` that minimises its lanes
    ``PE * SIMD * in_bits`` (the XNOR/adder cost) subject to
    ``layer_cycles <= floor(clock_hz / images_per_second)``; ties prefer fewer padded rows and
    lanes, then a smaller PE.

    Raises :class:`~bnnhw.errors.ModelError` naming the first layer that cannot meet the rate
    even fully unfolded.
    """
    for name, v in (("images_per_second", images_per_second), ("clock_hz", clock_hz)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                or not math.isfinite(v):
            raise ModelError(f"{name} must be a positive number, not {v!r}")
    if not math.isfinite(clock_hz / images_per_second):
        raise ModelError(f"a clock of {clock_hz!r} Hz at {images_per_second!r} images/s gives no "
                         f"finite cycle budget")
    budget = math.floor(clock_hz / images_per_second)
    out = {}
    for info in _compute_infos(net):
        layer = info.layer
        o, k, pix = layer.out_channels, layer.fan_in, _pixels(info)
        bits = getattr(layer, "input_bits", 1)
        best = None
        for simd in range(1, k + 1):
            if not _simd_ok(layer, simd):
                continue
            sf = -(-k // simd)
            nf_max = budget // (sf * pix)
            if nf_max < 1:
                continue
            pe = -(-o // min(nf_max, o))
            nf = -(-o // pe)
            key = (pe * simd * bits, nf * pe - o + sf * simd - k, pe)
            if best is None or key < best[0]:
                best = (key, pe, simd)
        if best is None:
            least = min(-(-k // simd) * pix for simd in range(1, k + 1) if _simd_ok(layer, simd))
            raise ModelError(f"layer {info.name!r} cannot reach {images_per_second} images/s at "
                             f"{clock_hz} Hz: it needs at least {least} cycles per image, the "
                             f"budget is {budget}")
        out[info.name] = {"PE": best[1], "SIMD": best[2]}
    return check_folding(net, out)
