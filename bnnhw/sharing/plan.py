"""The sharing plan: which 2-D kernels of each binary convolution are computed, and how.

A binary convolution's 3-D filter ``W[o]`` decomposes into 2-D kernels ``W[o, c]`` of
``n = kh * kw`` bits (SPEC §9); at every window ``P[o] = sum_c p(o, c)``. A sharing plan says,
per layer and per input channel ``c``, which 2-D popcounts are really computed (the channel's
*entries*) and, per output channel ``o``, which entry gives ``p(o, c)``. It is the one data
structure that the golden model (:func:`bnnhw.golden.forward` with ``sharing=``), the
hardware generator, the manifest and the reports read.

Bits of a 2-D kernel
    A kernel is an ``n``-bit integer: bit ``i`` is tap ``i = ky * kw + kx`` (row major), and a
    set bit is weight +1 (the convention of :mod:`bnnhw.model.packing`). ``NOT w`` is
    ``w ^ (2^n - 1)``.

An entry (:class:`KernelEntry`) of channel ``c`` is the exact popcount
``p_e = popcount(XNOR(window_c, bits))`` of its kernel ``bits``, obtained

* from scratch (``source is None``): one 2-D op, ``n`` XNOR bits;
* as the inverse of an earlier entry ``k`` (``invert``, no corrections): ``p_e = n - p_k``;
* from an earlier entry ``k`` with the correction set ``D`` (``corrections``, the positions
  where ``bits`` differs from ``k``'s kernel, or from ``NOT`` it when ``invert``):
  ``p_e = p'_k + sum_{i in D} (2 XNOR(x_i, bits_i) - 1)``, with ``p'_k = p_k`` or
  ``n - p_k``; this is SPEC §9's ``sum_{i in D} (XNOR(x_i, w'_i) - XNOR(x_i, w_i))``, since
  the two kernels differ at every ``i`` in ``D``.

Entries are listed in a valid order of computation (a source comes before the entries made
from it). An entry that no output channel reads is an *intermediate*: a stepping stone of a
derivation chain. Each output channel ``o`` reads entry ``entry[o]``, inverted
(``p(o, c) = n - p_e``) when ``inverted[o]``; the hardware can fold the constant
``n * (number of inverted channels)`` of an output into its threshold.

The plan's *mode* says how the output channels' kernels relate to the entries they read:

* ``"exact"``: repeated and inverse kernels only; entries from scratch (or inverse);
* ``"similar:D"``: also exact corrections of at most ``D`` positions per derivation step;
* ``"approx:D"``: an output channel may read the entry of a *representative* kernel at most
  ``D`` positions away (from it or from its inverse) and reuse its popcount unchanged
  (SPEC §9's approximate mode); the entries themselves are still exact. The network
  computed is then the network whose kernels are the read entries' kernels
  (:meth:`SharingPlan.effective_weight`), and the golden model computes exactly that.

A plan is frozen and checks its internal invariants on construction (sources before use,
positions in range, ``bits`` consistent with source and corrections, at most ``D`` corrections
per step, no dead entries); :meth:`SharingPlan.check` checks it against a network (same
network, and every output channel's kernel reproduced exactly, or within ``D`` in approximate
mode). Plans serialise to deterministic JSON (:meth:`SharingPlan.to_json`).
"""

import json
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, ModelError

__all__ = ["KernelEntry", "ChannelPlan", "LayerPlan", "SharingPlan", "parse_mode",
           "kernel_bits", "bits_to_kernel", "FORMAT", "VERSION", "MAX_KERNEL_BITS"]

FORMAT = "bnnhw-sharing-plan"
VERSION = 1

#: Kernels are held as int64 bit patterns: at most this many taps (kh * kw).
MAX_KERNEL_BITS = 62

#: Order of an entry's fields in the JSON form.
ENTRY_FIELDS = ("bits", "source", "invert", "corrections")


def parse_mode(mode):
    """Split a mode string into ``(kind, max_distance)``.

    Parameters
    ----------
    mode : str
        ``"exact"``, ``"similar:D"`` or ``"approx:D"`` with an integer ``D >= 1``.

    Returns
    -------
    kind : str
        ``"exact"``, ``"similar"`` or ``"approx"``.
    max_distance : int
        0 for ``"exact"``.

    Raises
    ------
    bnnhw.errors.InputError
        Naming the malformed mode.
    """
    if not isinstance(mode, str):
        raise InputError(f"sharing mode must be a string like 'similar:1', not {mode!r}")
    if mode == "exact":
        return "exact", 0
    kind, sep, d = mode.partition(":")
    if kind not in ("similar", "approx") or not sep:
        raise InputError(f"sharing mode must be 'exact', 'similar:D' or 'approx:D', "
                         f"not {mode!r}")
    try:
        distance = int(d, 10)
    except ValueError:
        raise InputError(f"sharing mode {mode!r}: the maximum distance must be an integer, "
                         f"not {d!r}") from None
    if distance < 1 or str(distance) != d:
        raise InputError(f"sharing mode {mode!r}: the maximum distance must be an integer "
                         f">= 1, not {d!r}")
    return kind, distance


def kernel_bits(weight):
    """2-D kernels of a convolution weight as bit patterns.

    Parameters
    ----------
    weight : array of +1 / -1, ``[O, C, kh, kw]``

    Returns
    -------
    numpy.ndarray of int64, ``[O, C]``
        Bit ``ky * kw + kx`` set where the weight is +1.
    """
    weight = np.asarray(weight)
    o, c, kh, kw = weight.shape
    n = kh * kw
    if n > MAX_KERNEL_BITS:
        raise ModelError(f"result sharing handles 2-D kernels of at most {MAX_KERNEL_BITS} "
                         f"taps, not {kh}x{kw}")
    taps = (weight.reshape(o, c, n) > 0).astype(np.int64)
    return (taps << np.arange(n, dtype=np.int64)).sum(axis=-1)


def bits_to_kernel(bits, kh, kw):
    """Inverse of :func:`kernel_bits`: int array ``[...]`` -> int8 +1 / -1 ``[..., kh, kw]``."""
    bits = np.asarray(bits, np.int64)
    taps = (bits[..., None] >> np.arange(kh * kw, dtype=np.int64)) & 1
    return (2 * taps - 1).astype(np.int8).reshape(*bits.shape, kh, kw)


def _popcount(v):
    return int(v).bit_count()


@dataclass(frozen=True)
class KernelEntry:
    """One computed 2-D popcount of a channel (see the module docstring).

    Parameters
    ----------
    bits : int
        The kernel whose popcount ``p_e`` this entry holds exactly.
    source : int or None
        Index of the earlier entry it is derived from; ``None``: computed from scratch.
    invert : bool
        Derived from ``n - p_source`` (the inverse of the source kernel).
    corrections : tuple of int
        Increasing positions where ``bits`` differs from the (inverted) source kernel.
    """
    bits: int
    source: int | None = None
    invert: bool = False
    corrections: tuple = ()

    @property
    def kind(self):
        """``"scratch"``, ``"inverse"`` (``n - p`` of the source) or ``"derived"``."""
        if self.source is None:
            return "scratch"
        return "derived" if self.corrections else "inverse"

    def cost_bits(self, n):
        """XNOR bits this entry costs: ``n`` from scratch, else its corrections."""
        return n if self.source is None else len(self.corrections)


@dataclass(frozen=True)
class ChannelPlan:
    """The entries of one input channel and, per output channel, the entry it reads.

    Parameters
    ----------
    entries : tuple of KernelEntry
        In a valid order of computation.
    entry : tuple of int
        ``entry[o]``: the entry that gives ``p(o, c)``.
    inverted : tuple of bool
        ``inverted[o]``: ``p(o, c) = n - p_entry``.
    """
    entries: tuple
    entry: tuple
    inverted: tuple

    def output_bits(self, n):
        """The kernel each output channel effectively uses: int64 ``[O]``."""
        mask = (1 << n) - 1
        bits = np.array([e.bits for e in self.entries], np.int64)
        return bits[list(self.entry)] ^ np.where(self.inverted, mask, 0)

    def depths(self):
        """Derivation steps from a scratch entry, per entry (0 for scratch)."""
        depth = []
        for e in self.entries:
            depth.append(0 if e.source is None else depth[e.source] + 1)
        return depth


@dataclass(frozen=True)
class LayerPlan:
    """The plan of one binary convolution.

    Parameters
    ----------
    name : str
        The layer's name.
    index : int
        Its index in ``Network.layers``.
    kernel : tuple
        ``(kh, kw)``.
    in_channels, out_channels : int
    output_hw : tuple
        ``(H_out, W_out)``: output pixels per image, for the operation counts.
    channels : tuple of ChannelPlan
        One per input channel.
    """
    name: str
    index: int
    kernel: tuple
    in_channels: int
    out_channels: int
    output_hw: tuple
    channels: tuple

    @property
    def kernel_size(self):
        """``n = kh * kw``."""
        return self.kernel[0] * self.kernel[1]

    @property
    def pixels(self):
        """Output pixels per image, ``H_out * W_out``."""
        return self.output_hw[0] * self.output_hw[1]

    def output_bits(self):
        """The kernels the plan computes, as bits: int64 ``[O, C]``."""
        n = self.kernel_size
        return np.stack([ch.output_bits(n) for ch in self.channels], axis=1)

    def inversion_offsets(self):
        """``n * (inverted reads of o)`` per output channel, int64 ``[O]``.

        ``P[o] = offset[o] + sum_c s(o, c) p_(entry[o] of c)`` with ``s = -1`` where read
        inverted, ``+1`` elsewhere: a datapath can subtract instead of add and fold the
        constant into the output's threshold.
        """
        inv = np.array([ch.inverted for ch in self.channels], bool)
        return self.kernel_size * inv.sum(axis=0).astype(np.int64)

    def effective_weight(self):
        """The kernels the plan computes, +1 / -1 int8 ``[O, C, kh, kw]`` (the layer's own
        weight in the exact modes)."""
        return bits_to_kernel(self.output_bits(), *self.kernel)


@dataclass(frozen=True)
class SharingPlan:
    """Result sharing for the binary convolutions of one network.

    Parameters
    ----------
    mode : str
        ``"exact"``, ``"similar:D"`` or ``"approx:D"`` (see the module docstring).
    network : str
        The network's :meth:`~bnnhw.model.Network.fingerprint`.
    network_name : str
    layers : tuple of LayerPlan
        The shared layers, in network order (layers not listed are computed unshared).
    intermediates : bool
        Whether the planner could add intermediate entries (provenance; any plan may hold
        them).
    max_depth : int or None
        The planner's bound on derivation steps from a scratch entry (provenance).

    Raises
    ------
    bnnhw.errors.ModelError
        When an invariant is broken; the message names layer, channel and entry.
    """
    mode: str
    network: str
    network_name: str
    layers: tuple
    intermediates: bool = True
    max_depth: int | None = None

    def __post_init__(self):
        try:
            kind, distance = parse_mode(self.mode)
        except InputError as e:
            raise ModelError(f"sharing plan: {e}") from None
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ModelError("sharing plan has no layers")
        last = -1
        for lp in self.layers:
            if lp.index <= last:
                raise ModelError(f"sharing plan layer {lp.name!r}: layers must be in network "
                                 f"order, one plan per layer (index {lp.index} after {last})")
            last = lp.index
            _check_layer(lp, kind, distance)
        # Derived data (compiled programs, checked networks); not a field: no part of
        # equality, hashing or the JSON form.
        object.__setattr__(self, "_cache", {})

    def __repr__(self):
        names = ", ".join(lp.name for lp in self.layers)
        return (f"SharingPlan(mode={self.mode!r}, network={self.network_name!r} "
                f"(id {self.network}), layers=[{names}])")

    # -- derived views ------------------------------------------------------------------------

    @property
    def kind(self):
        """``"exact"``, ``"similar"`` or ``"approx"``."""
        return parse_mode(self.mode)[0]

    @property
    def max_distance(self):
        """The mode's ``D`` (0 for ``"exact"``)."""
        return parse_mode(self.mode)[1]

    @property
    def is_exact(self):
        """Whether the plan computes the network's own kernels (not ``"approx"``)."""
        return self.kind != "approx"

    def layer(self, name):
        """The :class:`LayerPlan` of the layer called ``name``."""
        for lp in self.layers:
            if lp.name == name:
                return lp
        raise KeyError(name)

    def by_index(self):
        """``{layer index: LayerPlan}``."""
        return {lp.index: lp for lp in self.layers}

    def check(self, net):
        """Refuse the plan for a network it does not describe.

        Checks the fingerprint, each layer's name, kind and shapes, and that every output
        channel's kernel is reproduced exactly (exact modes) or within the maximum distance
        (``"approx:D"``).

        Raises
        ------
        bnnhw.errors.InputError
            Naming the layer, channel and value that do not fit.
        """
        from ..model.layers import BinaryConv2d
        if self.network != net.fingerprint():
            raise InputError(f"sharing plan is for network {self.network_name!r} "
                             f"(id {self.network}), not {net.name!r} (id {net.fingerprint()})")
        n_layers = len(net.layers)
        for lp in self.layers:
            where = f"sharing plan layer {lp.name!r}"
            if lp.index >= n_layers:
                raise InputError(f"{where}: the network has no layer {lp.index}")
            info = net.infos[lp.index]
            layer = info.layer
            if not isinstance(layer, BinaryConv2d):
                raise InputError(f"{where}: layer {lp.index} is {layer.kind} {layer.name!r}, "
                                 f"not a binary convolution")
            if layer.name != lp.name:
                raise InputError(f"{where}: layer {lp.index} is called {layer.name!r}")
            got = (tuple(lp.kernel), lp.in_channels, lp.out_channels, tuple(lp.output_hw))
            want = (layer.kernel, layer.in_channels, layer.out_channels, info.output_shape[1:])
            if got != want:
                raise InputError(f"{where}: kernel, channels and output size {got} do not "
                                 f"match the layer's {want}")
            have = lp.output_bits()
            need = kernel_bits(layer.weight)
            diff = np.bitwise_count((have ^ need).astype(np.uint64))
            limit = self.max_distance if self.kind == "approx" else 0
            bad = diff > limit
            if bad.any():
                o, c = (int(i) for i in np.argwhere(bad)[0])
                raise InputError(f"{where} channel {c}: output channel {o} reads kernel "
                                 f"{int(have[o, c]):#x} but its weight is {int(need[o, c]):#x} "
                                 f"({int(diff[o, c])} positions apart, {self.mode} allows "
                                 f"{limit})")

    def effective_weights(self):
        """``{layer name: +1 / -1 [O, C, kh, kw]}``: the kernels the plan computes."""
        return {lp.name: lp.effective_weight() for lp in self.layers}

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self):
        """A JSON-serialisable dict (the form of :meth:`to_json`)."""
        layers = []
        for lp in self.layers:
            channels = []
            for ch in lp.channels:
                channels.append({
                    "entries": [[int(e.bits), e.source, int(e.invert), list(e.corrections)]
                                for e in ch.entries],
                    "entry": [int(i) for i in ch.entry],
                    "inverted": [int(v) for v in ch.inverted]})
            layers.append({"name": lp.name, "index": lp.index, "kernel": list(lp.kernel),
                           "in_channels": lp.in_channels, "out_channels": lp.out_channels,
                           "output_hw": list(lp.output_hw), "channels": channels})
        return {"format": FORMAT, "version": VERSION, "mode": self.mode,
                "network": self.network, "network_name": self.network_name,
                "intermediates": bool(self.intermediates), "max_depth": self.max_depth,
                "entry_fields": list(ENTRY_FIELDS), "layers": layers}

    def to_json(self):
        """Deterministic JSON text: the same plan always gives the same bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data, *, source="sharing plan"):
        """Rebuild a plan from :meth:`to_dict`'s form, checking every field.

        Raises
        ------
        bnnhw.errors.InputError
            Naming the field (``source`` says where the data came from).
        """
        return _from_dict(cls, data, source)

    @classmethod
    def from_json(cls, text, *, source="sharing plan"):
        """Rebuild a plan from :meth:`to_json`'s text."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InputError(f"{source} is not valid JSON ({e})") from None
        return _from_dict(cls, data, source)

    def save(self, path):
        """Write :meth:`to_json` to ``path`` atomically."""
        from ..model.io import atomic_write

        def write(tmp):
            with open(tmp, "w") as f:
                f.write(self.to_json())
        atomic_write(path, write)

    @classmethod
    def load(cls, path):
        """Read a plan file written by :meth:`save` (or a ``bnnhw share --json`` report,
        whose ``"plan"`` it takes)."""
        from pathlib import Path
        path = Path(path)
        source = f"sharing plan file {str(path)!r}"
        try:
            text = path.read_text()
        except OSError as e:
            raise InputError(f"{source}: cannot read it ({e.strerror or e})") from None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InputError(f"{source} is not valid JSON ({e})") from None
        if isinstance(data, dict) and "plan" in data and "format" not in data:
            data = data["plan"]
        return _from_dict(cls, data, source)


# -- invariants -------------------------------------------------------------------------------

def _check_layer(lp, kind, distance):
    where = f"sharing plan layer {lp.name!r}"
    if not isinstance(lp, LayerPlan):
        raise ModelError(f"sharing plan layers must be LayerPlan, not {type(lp).__name__}")
    kh, kw = lp.kernel
    n = kh * kw
    if min(kh, kw, lp.in_channels, lp.out_channels) < 1 or n > MAX_KERNEL_BITS:
        raise ModelError(f"{where}: kernel {kh}x{kw}, {lp.in_channels} input and "
                         f"{lp.out_channels} output channels are not a valid convolution")
    if len(lp.channels) != lp.in_channels:
        raise ModelError(f"{where}: {len(lp.channels)} channel plans for "
                         f"{lp.in_channels} input channels")
    mask = (1 << n) - 1
    for c, ch in enumerate(lp.channels):
        here = f"{where} channel {c}"
        if len(ch.entry) != lp.out_channels or len(ch.inverted) != lp.out_channels:
            raise ModelError(f"{here}: entry and inverted need one value per output channel "
                             f"({lp.out_channels}), not {len(ch.entry)} and "
                             f"{len(ch.inverted)}")
        if not ch.entries:
            raise ModelError(f"{here}: no entries")
        used = [False] * len(ch.entries)
        for i, e in enumerate(ch.entries):
            at = f"{here} entry {i}"
            if not 0 <= e.bits <= mask:
                raise ModelError(f"{at}: kernel bits {e.bits!r} do not fit {n} positions")
            if e.source is None:
                if e.invert or e.corrections:
                    raise ModelError(f"{at}: a scratch entry has no inversion or corrections")
                continue
            if not 0 <= e.source < i:
                raise ModelError(f"{at}: source {e.source} must be an earlier entry "
                                 f"(0..{i - 1})")
            used[e.source] = True
            d = tuple(e.corrections)
            if list(d) != sorted(set(d)) or (d and not 0 <= d[0] <= d[-1] < n):
                raise ModelError(f"{at}: corrections {list(d)} must be increasing positions "
                                 f"in 0..{n - 1}")
            if kind == "exact" and d:
                raise ModelError(f"{at}: mode 'exact' allows no corrections, not {list(d)}")
            if len(d) > distance and kind != "exact":
                raise ModelError(f"{at}: {len(d)} corrections {list(d)}, but the mode allows "
                                 f"at most {distance}")
            base = ch.entries[e.source].bits ^ (mask if e.invert else 0)
            flips = sum(1 << p for p in d)
            if base ^ flips != e.bits:
                raise ModelError(f"{at}: kernel {e.bits:#x} is not source entry {e.source}'s "
                                 f"{'inverted ' if e.invert else ''}kernel {base:#x} corrected "
                                 f"at {list(d)} (that gives {base ^ flips:#x})")
        for o, (k, inv) in enumerate(zip(ch.entry, ch.inverted)):
            if not 0 <= k < len(ch.entries):
                raise ModelError(f"{here}: output channel {o} reads entry {k}, which does not "
                                 f"exist (0..{len(ch.entries) - 1})")
            if inv not in (True, False):
                raise ModelError(f"{here}: inverted[{o}] must be a bool, not {inv!r}")
            used[k] = True
        if not all(used):
            raise ModelError(f"{here} entry {used.index(False)}: computed but never read "
                             f"(no output channel or later entry uses it)")


# -- reading the JSON form --------------------------------------------------------------------

def _int(value, where, lo=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where} must be an integer, not {value!r}")
    if lo is not None and value < lo:
        raise InputError(f"{where} must be at least {lo}, not {value}")
    return value


def _list(value, where, length=None):
    if not isinstance(value, list):
        raise InputError(f"{where} must be a list, not {type(value).__name__}")
    if length is not None and len(value) != length:
        raise InputError(f"{where} must have {length} items, not {len(value)}")
    return value


def _from_dict(cls, data, source):
    if not isinstance(data, dict):
        raise InputError(f"{source} must be a JSON object, not {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise InputError(f"{source}: format must be {FORMAT!r}, not {data.get('format')!r}")
    if data.get("version") != VERSION:
        raise InputError(f"{source}: version {data.get('version')!r} is not supported "
                         f"(this bnnhw reads version {VERSION})")
    if data.get("entry_fields", list(ENTRY_FIELDS)) != list(ENTRY_FIELDS):
        raise InputError(f"{source}: entry_fields must be {list(ENTRY_FIELDS)}")
    for key in ("mode", "network", "network_name"):
        if not isinstance(data.get(key), str):
            raise InputError(f"{source}: {key} must be a string, not {data.get(key)!r}")
    if not isinstance(data.get("intermediates", True), bool):
        raise InputError(f"{source}: intermediates must be true or false")
    max_depth = data.get("max_depth")
    if max_depth is not None:
        _int(max_depth, f"{source}: max_depth", 1)
    layers = []
    for li, ld in enumerate(_list(data.get("layers"), f"{source}: layers")):
        where = f"{source}: layers[{li}]"
        if not isinstance(ld, dict):
            raise InputError(f"{where} must be an object")
        if not isinstance(ld.get("name"), str):
            raise InputError(f"{where}.name must be a string")
        kernel = tuple(_int(v, f"{where}.kernel", 1)
                       for v in _list(ld.get("kernel"), f"{where}.kernel", 2))
        hw = tuple(_int(v, f"{where}.output_hw", 1)
                   for v in _list(ld.get("output_hw"), f"{where}.output_hw", 2))
        cin = _int(ld.get("in_channels"), f"{where}.in_channels", 1)
        cout = _int(ld.get("out_channels"), f"{where}.out_channels", 1)
        channels = []
        for c, cd in enumerate(_list(ld.get("channels"), f"{where}.channels", cin)):
            at = f"{where}.channels[{c}]"
            if not isinstance(cd, dict):
                raise InputError(f"{at} must be an object")
            entries = []
            for i, ed in enumerate(_list(cd.get("entries"), f"{at}.entries")):
                bits, src, inv, corr = _list(ed, f"{at}.entries[{i}]", 4)
                _int(bits, f"{at}.entries[{i}] bits", 0)
                if src is not None:
                    _int(src, f"{at}.entries[{i}] source", 0)
                if inv not in (0, 1) or isinstance(inv, float):
                    raise InputError(f"{at}.entries[{i}] invert must be 0 or 1, not {inv!r}")
                corr = tuple(_int(p, f"{at}.entries[{i}] corrections", 0)
                             for p in _list(corr, f"{at}.entries[{i}] corrections"))
                entries.append(KernelEntry(bits, src, bool(inv), corr))
            entry = tuple(_int(v, f"{at}.entry", 0)
                          for v in _list(cd.get("entry"), f"{at}.entry", cout))
            inverted = _list(cd.get("inverted"), f"{at}.inverted", cout)
            if any(v not in (0, 1) or isinstance(v, float) for v in inverted):
                raise InputError(f"{at}.inverted must hold 0 or 1")
            channels.append(ChannelPlan(tuple(entries), entry, tuple(bool(v) for v in inverted)))
        layers.append(LayerPlan(ld["name"], _int(ld.get("index"), f"{where}.index", 0),
                                kernel, cin, cout, hw, tuple(channels)))
    try:
        return cls(data["mode"], data["network"], data["network_name"], tuple(layers),
                   data.get("intermediates", True), max_depth)
    except ModelError as e:
        raise InputError(f"{source}: {e}") from None
