"""A network's per-layer summary (``bnnhw info``, the demo, reports): one derivation."""

__all__ = ["model_summary"]


def model_summary(net):
    """Per layer: kind, shapes, K, minimal and used accumulator widths, operations, weight bits.

    Returns
    -------
    dict
        ``{"name", "id", "input_shape", "classes", "output_rule", "layers": [...],
        "total_operations", "total_weight_bits"}`` (JSON-serialisable).
    """
    layers = []
    for info in net.infos:
        layer = info.layer
        layers.append({
            "name": info.name, "kind": info.kind,
            "input_shape": list(info.input_shape), "output_shape": list(info.output_shape),
            "K": info.fan_in,
            "min_acc_bits": getattr(layer, "min_acc_bits", None),
            "acc_bits": getattr(layer, "accumulator_bits", getattr(layer, "signed_bits", None)),
            "operations": info.operations, "weight_bits": info.weight_bits,
        })
    return {"name": net.name, "id": net.fingerprint(), "input_shape": list(net.input_shape),
            "classes": list(net.classes), "output_rule": net.output_rule, "layers": layers,
            "total_operations": net.total_operations,
            "total_weight_bits": net.total_weight_bits}
