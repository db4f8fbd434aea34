"""A custom MLServer runtime that serves a cohost MLP from its own files.

It reads the same `config.toml` and `model.safetensors` that `cohost serve` loads, so
both servers compute with identical weights:

    input [-1, layers[0]] -> (Linear + ReLU)* -> Linear (-> sigmoid if `sigmoid = true`)
    -> output [-1, layers[-1]]

Tensors are `layers.{i}.weight` `[layers[i+1], layers[i]]` and `layers.{i}.bias`
`[layers[i+1]]` (see models/src/mlp.rs). F32, F16 and BF16 weights are widened to f32,
as cohost does.

model-settings.json `parameters`:
    uri    the model.safetensors file
    extra  {"config": path of the cohost config.toml}

The forward pass is plain float32 numpy (`x @ W.T + b`); MLServer's adaptive batching
(`max_batch_size`, `max_batch_time`) concatenates queued requests along the first
dimension before `predict` sees them and splits the answer afterwards.
"""

from __future__ import annotations

import tomllib
from typing import List, Tuple

import numpy as np
from safetensors import safe_open

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """BF16 stored as uint16 -> float32 (the high half of an f32)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def load_mlp(config_path: str, weights_path: str) -> Tuple[List[Tuple[np.ndarray, np.ndarray]], bool, List[int]]:
    """Layers as (W^T contiguous [in, out], bias [out]) pairs, the sigmoid flag, the widths."""
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
    family = config.get("family", "mlp")
    if family != "mlp" or "mlp" not in config:
        raise ValueError(f"{config_path}: not an MLP config (family = {family!r})")
    widths = [int(w) for w in config["mlp"]["layers"]]
    sigmoid = bool(config["mlp"].get("sigmoid", False))

    layers = []
    # framework="numpy" keeps this free of torch; bf16 has no numpy dtype, so read raw.
    with safe_open(weights_path, framework="numpy") as st:
        names = set(st.keys())
        for i in range(len(widths) - 1):
            inp, out = widths[i], widths[i + 1]
            pair = []
            for kind, shape in (("weight", (out, inp)), ("bias", (out,))):
                name = f"layers.{i}.{kind}"
                if name not in names:
                    raise ValueError(f"{weights_path}: tensor {name!r} missing")
                t = st.get_tensor(name)
                if t.dtype == np.uint16:  # how safetensors' numpy API hands out BF16
                    t = _bf16_to_f32(t)
                t = np.asarray(t, dtype=np.float32)
                if tuple(t.shape) != shape:
                    raise ValueError(f"{name}: shape {t.shape}, expected {shape}")
                pair.append(t)
            w, b = pair
            layers.append((np.ascontiguousarray(w.T), b))
    return layers, sigmoid, widths


def forward(layers, sigmoid: bool, x: np.ndarray) -> np.ndarray:
    last = len(layers) - 1
    for i, (wt, b) in enumerate(layers):
        x = x @ wt
        x += b
        if i < last:
            np.maximum(x, 0.0, out=x)
    if sigmoid:
        x = 1.0 / (1.0 + np.exp(-x))
    return x


class CohostMLP(MLModel):
    """Serves one cohost MLP (config.toml + model.safetensors) with numpy."""

    async def load(self) -> bool:
        params = self.settings.parameters
        extra = (params.extra or {}) if params else {}
        if not params or not params.uri or "config" not in extra:
            raise ValueError("parameters.uri (model.safetensors) and parameters.extra.config (config.toml) are required")
        self._layers, self._sigmoid, widths = load_mlp(extra["config"], params.uri)
        self._inp = widths[0]
        self._input_name = extra.get("input_name", "input")
        self._output_name = extra.get("output_name", "output")
        # One warm-up pass so the first request does not pay for BLAS start-up.
        forward(self._layers, self._sigmoid, np.zeros((1, self._inp), dtype=np.float32))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if len(payload.inputs) != 1:
            raise InferenceError(f"expected 1 input, got {len(payload.inputs)}")
        x = self.decode(payload.inputs[0], default_codec=NumpyCodec)
        x = np.asarray(x, dtype=np.float32)
        if x.size % self._inp != 0:
            raise InferenceError(f"input of {x.size} values is not a multiple of {self._inp}")
        y = forward(self._layers, self._sigmoid, x.reshape(-1, self._inp))
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name=self._output_name, payload=y)],
        )
