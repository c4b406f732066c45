"""The litert-cpu target (optional extra): jax.export -> StableHLO -> TFL flatbuffer ->
`ai-edge-litert`'s interpreter with XNNPACK; also the flatbuffers of `latency export` and
`mnas.export`.

The converter is `litert-converter` (no TensorFlow). Install both with `pip install -e .[tf]`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from mnas.latency import entries, timing
from mnas.latency.targets import TargetUnavailableError, remember

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
    self._programs: dict = {}
    self.reference = timing.Reference(self._arch_call)

  def _interpreter(self, content: bytes):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=content, num_threads=self.threads)
    it.allocate_tensors()
    for j, d in enumerate(it.get_input_details()):
      it.set_tensor(d['index'], entries.random_input(d['shape'], 100 + j))
    return it

  def _convert(self, module, in_shape, protocol: Mapping[str, Any], chain: int):
    """([invoke of one copy, invoke of `chain` copies (when > 1)], compile seconds)."""
    shape = (protocol['batch_size'],) + tuple(in_shape)
    variables = entries.random_variables(module, shape, protocol['seed'])
    apply = lambda x: module.apply(variables, x)
    t0 = time.perf_counter()
    programs = [self._interpreter(to_tflite(apply, [shape]))]
    if chain > 1:
      programs.append(self._interpreter(to_tflite(lambda *xs: [apply(x) for x in xs],
                                                  [shape] * chain)))
    return [p.invoke for p in programs], time.perf_counter() - t0

  def measure_entry(self, spec: dict, protocol: Mapping[str, Any]) -> dict:
    module, in_shape = entries.entry_module(spec, litert_impl(protocol['depthwise_impl']),
                                            LITERT_LAYER_IMPL)
    # 'loop' is one invoke here: an interpreter has no per-call dispatch of arrays to amortise.
    k = int(protocol['chain']) if protocol['method'] == 'marginal' else 1
    calls, compile_s = self._convert(module, in_shape, protocol, k)
    return timing.time_calls(protocol, calls[0], calls[1] if k > 1 else None, k, compile_s,
                             self.reference(protocol))

  def _arch_call(self, arch_str: str, num_classes: int, protocol: Mapping[str, Any]):
    """(invoke, 1, compile seconds) of a whole architecture, converted once and kept."""
    key = (arch_str, num_classes, protocol['seed'])
    if key not in self._programs:
      model, in_shape = entries.arch_model(arch_str, num_classes,
                                           litert_impl(protocol['depthwise_impl']),
                                           LITERT_LAYER_IMPL)
      calls, compile_s = self._convert(model, in_shape, protocol, 1)
      remember(self._programs, key, (calls[0], 1, compile_s))
    return self._programs[key]

  def measure_arch(self, arch_str: str, num_classes: int, protocol: Mapping[str, Any]) -> dict:
    """End to end, relative to the reference (`timing.Reference`); converted once."""
    call, calls, compile_s = self._arch_call(arch_str, num_classes, protocol)
    return timing.time_calls(protocol, call, None, calls, compile_s,
                             self.reference(dict(protocol, num_classes=num_classes), arch_str))
