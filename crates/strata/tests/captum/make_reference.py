#!/usr/bin/env python3
"""captum's attributions of the parity ResNet-18, the reference that
tests/captum_parity.rs compares strata with.

    cargo run --release -p strata --example captum_inputs -- /tmp/parity
    PY=~/.cache/strata-bench-venv/bin/python   # torch, torchvision, captum
    $PY crates/strata/tests/captum/make_reference.py /tmp/parity crates/strata/tests/captum

Reads weights.safetensors (torchvision names) and input.npy (1, H, W, C)
from the first folder; writes into the second, all in strata's NHWC layout:
logits.npy (1, K), saliency.npy (H, W, C: Saliency, abs=False),
integrated_gradients.npy (H, W, C: IntegratedGradients, zero baseline,
50 steps, riemann_trapezoid), gradcam_layer4.npy (H', W': LayerGradCam on
layer4, relu_attributions=True), layer2.npy and layer4.npy (the layers'
outputs by forward hooks, H', W', C), and versions.json.
"""
import json
import struct
import sys

import captum
import numpy as np
import torch
import torchvision
from captum.attr import IntegratedGradients, LayerGradCam, Saliency


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        assert info["dtype"] == "F32", name
        out[name] = torch.from_numpy(
            np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"]).copy()
        )
    return out


def main(src, dst):
    torch.manual_seed(0)
    state = read_safetensors(f"{src}/weights.safetensors")
    classes = state["fc.weight"].shape[0]
    model = torchvision.models.resnet18(num_classes=classes)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    model.eval()
    x = torch.from_numpy(np.load(f"{src}/input.npy")).permute(0, 3, 1, 2).contiguous()

    def nhwc(t):
        t = t.detach()
        return t.permute(0, 2, 3, 1)[0].numpy() if t.dim() == 4 else t.numpy()

    saved = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: saved.__setitem__(name, out)
        )
        for name in ("layer2", "layer4")
    ]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    target = int(logits.argmax(dim=1))
    np.save(f"{dst}/logits.npy", logits.numpy().astype("<f4"))
    np.save(f"{dst}/layer2.npy", nhwc(saved["layer2"]).astype("<f4"))
    np.save(f"{dst}/layer4.npy", nhwc(saved["layer4"]).astype("<f4"))

    sal = Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=False)
    np.save(f"{dst}/saliency.npy", nhwc(sal).astype("<f4"))
    ig = IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=50, method="riemann_trapezoid"
    )
    np.save(f"{dst}/integrated_gradients.npy", nhwc(ig).astype("<f4"))
    cam = LayerGradCam(model, model.layer4).attribute(x, target=target, relu_attributions=True)
    np.save(f"{dst}/gradcam_layer4.npy", cam.detach()[0, 0].numpy().astype("<f4"))

    with open(f"{dst}/versions.json", "w") as f:
        json.dump(
            {
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "captum": captum.__version__,
                "target": target,
            },
            f,
            indent=2,
        )
        f.write("\n")
    print(f"target class {target}; wrote {dst}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
