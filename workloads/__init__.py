"""Workload builders (LLMs from HF-style configs, CNNs), presets and the quantization
quality proxy.

``wl = perfmodel.workloads.preset("llama-2-7b")`` then ``wl.decode(...)``,
``wl.prefill(...)`` or ``wl.request(...)`` give a `perfmodel.Ops` table;
``quality_loss(wl, wbits=4)`` the perplexity increase those bits cost;
``ModelShape.from_llm(wl)`` its sizes as float leaves (jit/vmap/grad), ``scaling_loss`` the
Chinchilla pretraining loss of a parameter count, ``harden_shape`` an exact model back.
"""

from perfmodel.workloads._cnn import CNN, CNN_PRESETS, ConvLayer
from perfmodel.workloads._hf_config import (ARCHITECTURES, from_hf_config, load_config,
                                            supported_model_types)
from perfmodel.workloads._kernels import gemm, gemm_row
from perfmodel.workloads._llm import ATTENTION_IMPLS, EMBED_BITS, LLM
from perfmodel.workloads._quality import (QualityReport, cross_validate, fit_quality,
                                          load_quality_data, quality_loss, quality_methods,
                                          quality_report)
from perfmodel.workloads._registry import list_presets, load, preset
from perfmodel.workloads._shape import (SCALING_FITS, ModelShape, harden_shape,
                                        perplexity_ratio, scaling_loss)
from perfmodel.workloads._ssm import SSM

__all__ = ["LLM", "SSM", "CNN", "ConvLayer", "preset", "list_presets", "load", "load_config",
           "from_hf_config", "ARCHITECTURES", "supported_model_types", "ATTENTION_IMPLS",
           "EMBED_BITS", "CNN_PRESETS", "gemm", "gemm_row", "quality_loss", "quality_report",
           "quality_methods", "QualityReport", "load_quality_data", "fit_quality",
           "cross_validate", "ModelShape", "harden_shape", "scaling_loss",
           "perplexity_ratio", "SCALING_FITS"]
