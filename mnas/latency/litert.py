"""The litert-cpu target (optional extra): jax.export -> StableHLO -> TFL flatbuffer ->
`ai-edge-litert`'s interpreter with XNNPACK; also the flatbuffers of `latency export` and
`mnas.export`.

The converter is `litert-converter` (no TensorFlow). Install both with `pip install -e .[tf]`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from mnas.latency import entries, timing
from mnas.latency.targets import TargetUnavailableError, XlaMeasurer

LITERT_PACKAGES = 'ai-edge-litert==2.3.0 and litert-converter==0.5.0'

# The layers exported to LiteRT: nn.Conv and nn.BatchNorm (CONV_2D / FULLY_CONNECTED with
# the batch norm and activation folded in), not the CPU 'fused' layers (their dot_general
# 1x1 convs convert to BATCH_MATMUL, which the converter rejects for rank-4 outputs).
LITERT_LAYER_IMPL = 'flax'


def require_litert() -> None:
  """Raises TargetUnavailableError saying what to install when LiteRT is missing."""
  try:
    from ai_edge_litert import interpreter  # noqa: F401
    import litert_converter  # noqa: F401
  except ImportError as e:
    raise TargetUnavailableError(
        f'target litert-cpu needs the optional LiteRT packages ({LITERT_PACKAGES}): '
        f'`pip install -e .[tf]` or `pip install {LITERT_PACKAGES.replace(" and ", " ")}` '
        f'({e})') from e


def to_tflite(fn: Callable, input_shapes: Sequence[Sequence[int]],
              name: str = 'serving_default') -> bytes:
  """Converts `fn(*inputs)` (variables closed over as constants) to a LiteRT flatbuffer."""
  require_litert()
  import jax
  import jax.numpy as jnp
  from litert_converter.mlir import ir, passmanager
  from litert_converter.mlir._mlir_libs import converter_api_ext as cae
  specs = [jax.ShapeDtypeStruct(tuple(s), jnp.float32) for s in input_shapes]
  exported = jax.export.export(jax.jit(fn), platforms=['cpu'])(*specs)
  text = exported.mlir_module()
  n_out = len(exported.out_avals)
  with ir.Context() as ctx:
    cae.prepare_mlir_context(ctx)
    module = ir.Module.parse(text)
    cae.run_convert_to_tfl_passes(module, passmanager.PassManager(), cae.ConvertToTFLConfig())
    cae.set_signature(module.operation, name, [f'x{j}' for j in range(len(specs))],
                      [f'y{j}' for j in range(n_out)])
    return bytes(cae.export_flatbuffer_to_bytes(module.operation))


def litert_impl(depthwise_impl: str) -> str:
  """The depthwise implementation exported to LiteRT: 'auto' is 'grouped', the grouped
  convolution that the converter turns into one DEPTHWISE_CONV_2D (XNNPACK's kernel),
  not XLA:CPU's shifted-slices formulation (dozens of elementwise ops in a flatbuffer)."""
  return 'grouped' if depthwise_impl == 'auto' else depthwise_impl


def entry_tflite(spec: dict, depthwise_impl: str, seed: int = 0) -> bytes:
  """One table entry as a standalone LiteRT flatbuffer, batch 1 (for `latency export`)."""
  module, in_shape = entries.entry_module(spec, litert_impl(depthwise_impl), LITERT_LAYER_IMPL)
  shape = (1,) + tuple(in_shape)
  variables = entries.random_variables(module, shape, seed)
  return to_tflite(lambda x: module.apply(variables, x), [shape])


class LiteRTMeasurer:
  """Times LiteRT flatbuffers with the XNNPACK CPU interpreter, `threads` threads."""

  def __init__(self, threads: int, depthwise_impl: str):
    require_litert()
    self.threads, self.depthwise_impl = threads, litert_impl(depthwise_impl)
    self._cache: dict = {}
    self._programs: dict = {}

  def _interpreter(self, content: bytes):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=content, num_threads=self.threads)
    it.allocate_tensors()
    return it

  def _time(self, module, in_shape, protocol: Mapping[str, Any], chain_inputs: bool,
            cache_key=None) -> dict:
    if cache_key is not None and cache_key in self._programs:  # Converted before: time again.
      return timing.time_calls(protocol, self._programs[cache_key])
    shape = (protocol['batch_size'],) + tuple(in_shape)
    variables = entries.random_variables(module, shape, protocol['seed'])
    method, k = protocol['method'], int(protocol['chain'])
    apply = lambda x: module.apply(variables, x)
    t0 = time.perf_counter()
    programs = [self._interpreter(to_tflite(apply, [shape]))]
    if method == 'marginal' and chain_inputs and k > 1:
      programs.append(self._interpreter(to_tflite(lambda *xs: [apply(x) for x in xs], [shape] * k)))
    compile_s = time.perf_counter() - t0
    for p in programs:
      for j, d in enumerate(p.get_input_details()):
        p.set_tensor(d['index'], entries.random_input(d['shape'], 100 + j))
    calls = [p.invoke for p in programs]
    if cache_key is not None:
      self._programs[cache_key] = calls[0]
      while len(self._programs) > XlaMeasurer.CACHE:
        self._programs.pop(next(iter(self._programs)))
    return timing.time_calls(protocol, calls[0], calls[1] if len(calls) > 1 else None, k,
                             compile_s)

  def measure_entry(self, spec: dict, protocol: Mapping[str, Any]) -> dict:
    module, in_shape = entries.entry_module(spec, litert_impl(protocol['depthwise_impl']),
                                            LITERT_LAYER_IMPL)
    return self._time(module, in_shape, protocol, chain_inputs=True)

  def measure_arch(self, arch_str: str, num_classes: int, protocol: Mapping[str, Any]) -> dict:
    key = (arch_str, num_classes)
    if key not in self._cache:
      self._cache[key] = entries.arch_model(arch_str, num_classes,
                                            litert_impl(protocol['depthwise_impl']),
                                            LITERT_LAYER_IMPL)
      while len(self._cache) > XlaMeasurer.CACHE:
        self._cache.pop(next(iter(self._cache)))
    return self._time(*self._cache[key], dict(protocol, method='single'), chain_inputs=False,
                      cache_key=key)
