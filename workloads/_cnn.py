"""Convolutional networks as GEMM rows (im2col), for CNN accelerators.

A convolution with C_in input channels, C_out filters of k x k, stride s on an
H x W input is the GEMM ``[B H_o W_o, C_in k k] x [C_in k k, C_out]``. Traffic assumes
im2col *reuse*: the input feature map is read once (``B H W C_in``), not k^2 times,
as a line-buffered or implicit-GEMM implementation does. Identical layers are merged
into one row with a count.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from perfmodel._ops import Ops, make_ops
from perfmodel.workloads._llm import _bits, _positive


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    cin: int
    cout: int
    kernel: int
    stride: int
    h_in: int          # input spatial size (square)
    kind: str = "conv"  # or "fc"

    @property
    def h_out(self) -> int:
        return max(1, -(-self.h_in // self.stride))

    @property
    def params(self) -> int:
        return self.cin * self.cout * self.kernel ** 2 + self.cout  # + bias / BN shift


@dataclasses.dataclass(frozen=True)
class CNN:
    """A CNN as a tuple of conv/fc layers (static). `inference` builds its `Ops`."""

    name: str
    layers: tuple[ConvLayer, ...]
    image: int = 224
    title: str = ""
    bibtex: str = ""
    published: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)
    extra_params: int = 0   # batch-norm scales etc. not attached to a conv

    def parameter_count(self) -> int:
        return sum(l.params for l in self.layers) + self.extra_params

    def inference(self, batch=1.0, *, wbits=16.0, abits=16.0) -> Ops:
        """One forward pass of ``batch`` images. tokens_per_s of the report = images/s."""
        _positive("batch", batch)
        _bits("wbits", wbits)
        _bits("abits", abits)
        B = jnp.asarray(batch, float)
        merged: dict[ConvLayer, int] = {}
        for layer in self.layers:
            merged[layer] = merged.get(layer, 0) + 1
        rows = []
        wb, ab = wbits / 8, abits / 8
        for i, (l, count) in enumerate(merged.items()):
            m = B * l.h_out ** 2
            k = l.cin * l.kernel ** 2
            rows.append(dict(
                name=f"{l.kind}{i}_{l.kernel}x{l.kernel}_{l.cin}-{l.cout}_s{l.stride}",
                kind=l.kind, m=m, n=float(l.cout), k=float(k), flops=2 * m * l.cout * k,
                weight_bytes=k * l.cout * wb, act_in_bytes=B * l.h_in ** 2 * l.cin * ab,
                act_out_bytes=m * l.cout * ab, compute_bits=jnp.maximum(wbits, abits),
                weight_bits=wbits, act_bits=abits,
                count=float(count)))
        weights = sum(l.params for l in self.layers) * wb
        return make_ops(rows, tokens=B, weight_footprint=weights, kv_footprint=0.0,
                        phase="inference", workload=self.name)


def _resnet(name, blocks, bottleneck, **meta) -> CNN:
    layers = [ConvLayer(3, 64, 7, 2, 224)]
    h, cin = 56, 64  # after stem conv (112) and max-pool (56)
    extra = 2 * 64   # stem batch-norm (scale+shift; the conv's cout term counts one)
    for stage, n in enumerate(blocks):
        width = 64 * 2 ** stage
        cout = width * (4 if bottleneck else 1)
        for b in range(n):
            stride = 2 if (b == 0 and stage > 0) else 1
            h_out = -(-h // stride)
            if bottleneck:
                layers += [ConvLayer(cin, width, 1, 1, h), ConvLayer(width, width, 3, stride, h),
                           ConvLayer(width, cout, 1, 1, h_out)]
                extra += 2 * (width + width + cout)
            else:
                layers += [ConvLayer(cin, width, 3, stride, h), ConvLayer(width, cout, 3, 1, h_out)]
                extra += 2 * (width + cout)
            if b == 0 and (stride != 1 or cin != cout):
                layers.append(ConvLayer(cin, cout, 1, stride, h))
                extra += 2 * cout
            cin, h = cout, h_out
    layers.append(ConvLayer(cin, 1000, 1, 1, 1, kind="fc"))
    # conv layers carry no bias in ResNet: remove the per-conv cout term counted in params
    extra -= sum(l.cout for l in layers if l.kind == "conv")
    return CNN(name=name, layers=tuple(layers), extra_params=extra, **meta)


def _vgg16(**meta) -> CNN:
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
           512, 512, 512, "M"]
    layers, cin, h = [], 3, 224
    for v in cfg:
        if v == "M":
            h //= 2
        else:
            layers.append(ConvLayer(cin, v, 3, 1, h))
            cin = v
    layers += [ConvLayer(512 * 7 * 7, 4096, 1, 1, 1, kind="fc"),
               ConvLayer(4096, 4096, 1, 1, 1, kind="fc"),
               ConvLayer(4096, 1000, 1, 1, 1, kind="fc")]
    return CNN(name="vgg-16", layers=tuple(layers), **meta)


_HE2016 = ("@inproceedings{he2016resnet, title={Deep Residual Learning for Image "
           "Recognition}, author={He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, "
           "Jian}, booktitle={CVPR}, year={2016}}")
_SIMONYAN2015 = ("@inproceedings{simonyan2015vgg, title={Very Deep Convolutional Networks for "
                 "Large-Scale Image Recognition}, author={Simonyan, Karen and Zisserman, "
                 "Andrew}, booktitle={ICLR}, year={2015}}")
_TV = "https://pytorch.org/vision/stable/models.html (torchvision weights table, num_params)"

CNN_PRESETS = {
    "resnet-18": lambda: _resnet("resnet-18", (2, 2, 2, 2), False, title="ResNet-18",
                                 bibtex=_HE2016, published={"parameters": 11689512,
                                                            "parameters_source": _TV}),
    "resnet-50": lambda: _resnet("resnet-50", (3, 4, 6, 3), True, title="ResNet-50",
                                 bibtex=_HE2016, published={"parameters": 25557032,
                                                            "parameters_source": _TV}),
    "vgg-16": lambda: _vgg16(title="VGG-16", bibtex=_SIMONYAN2015,
                             published={"parameters": 138357544, "parameters_source": _TV}),
}
