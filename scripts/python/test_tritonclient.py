#!/usr/bin/env python3
"""Drives a running cohost server with Triton's own Python client (tritonclient 2.51.0).

Over HTTP (JSON and binary tensors) and gRPC (raw tensors, stream), for an MLP and a
DLRM model: health, server and model metadata, model config, readiness, inference checked
numerically against a numpy recomputation from the model's safetensors, statistics,
repository index, the load counter in gRPC trailing metadata, and error cases (status
code and message). Exits non-zero on the first failure.

Usage: test_tritonclient.py --http localhost:8000 --grpc localhost:8001 --repository DIR
"""

import argparse
import json
import os
import queue
import struct
import sys
import traceback

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

try:  # Python 3.11+; the script installs tomli on older Pythons.
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib

CHECKS = []


def check(cond, what):
    """Records one check; raises on failure."""
    if not cond:
        raise AssertionError(what)
    CHECKS.append(what)


# ---------------------------------------------------------------- numpy reference


def load_safetensors(path):
    """Parses a safetensors file (F32 only is needed here) into numpy arrays."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "F16": np.float16, "F64": np.float64}[meta["dtype"]]
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtype).reshape(meta["shape"]).astype(np.float64)
    return out


def dense_stack(w, prefix, x, n_layers, last_act):
    for i in range(n_layers):
        x = x @ w[f"{prefix}.{i}.weight"].T + w[f"{prefix}.{i}.bias"]
        act = last_act if i == n_layers - 1 else "relu"
        if act == "relu":
            x = np.maximum(x, 0.0)
        elif act == "sigmoid":
            x = 1.0 / (1.0 + np.exp(-x))
    return x


def reference(model_dir, config, inputs):
    """Recomputes a model's output in float64 from its weights (MLP or DLRM semantics)."""
    versions = sorted(int(v) for v in os.listdir(model_dir) if v.isdigit())
    w = load_safetensors(os.path.join(model_dir, str(versions[-1]), "model.safetensors"))
    if config["family"] == "mlp":
        p = config["mlp"]
        last = "sigmoid" if p.get("sigmoid") else None
        return dense_stack(w, "layers", inputs[0].astype(np.float64), len(p["layers"]) - 1, last)
    p = config["dlrm"]
    dense, sparse = inputs[0].astype(np.float64), inputs[1]
    x = dense_stack(w, "bottom", dense, len(p["bottom"]), "relu")
    tables = len(p["table_sizes"])
    hot = p["multi_hot"] if len(p["multi_hot"]) > 1 else p["multi_hot"] * tables
    feats, off = [x], 0
    for t in range(tables):
        idx = sparse[:, off : off + hot[t]]
        feats.append(w[f"embeddings.{t}.weight"][idx].sum(axis=1))
        off += hot[t]
    cols = [x]
    for i in range(1, len(feats)):
        for j in range(i):
            cols.append((feats[i] * feats[j]).sum(axis=1, keepdims=True))
    z = np.concatenate(cols, axis=1)
    return dense_stack(w, "top", z, len(p["top"]), "sigmoid")


def sample_inputs(config, rows, seed):
    """Deterministic inputs: floats in [-1, 1), indices valid for every table."""
    rng = np.random.default_rng(seed)
    out = []
    min_rows = min(config.get("dlrm", {}).get("table_sizes", [1]))
    for spec in config["inputs"]:
        shape = [rows] + list(spec["dims"][1:])
        if spec["datatype"] == "FP32":
            out.append(rng.uniform(-1, 1, size=shape).astype(np.float32))
        else:
            out.append(rng.integers(0, min_rows, size=shape).astype(np.int64))
    return out


# ---------------------------------------------------------------- clients


def http_infer(client, model, config, arrays, binary):
    inputs = []
    for spec, a in zip(config["inputs"], arrays):
        i = httpclient.InferInput(spec["name"], list(a.shape), spec["datatype"])
        i.set_data_from_numpy(a, binary_data=binary)
        inputs.append(i)
    outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in config["outputs"]]
    res = client.infer(model, inputs, outputs=outputs, request_id="py-1")
    check(res.get_response()["id"] == "py-1", f"HTTP {model}: request id echoed")
    return res.as_numpy(config["outputs"][0]["name"])


def grpc_inputs(config, arrays, datatypes=None):
    inputs = []
    for k, (spec, a) in enumerate(zip(config["inputs"], arrays)):
        dt = datatypes[k] if datatypes else spec["datatype"]
        i = grpcclient.InferInput(spec["name"], list(a.shape), dt)
        i.set_data_from_numpy(a)
        inputs.append(i)
    return inputs


def grpc_infer(client, model, config, arrays, datatypes=None):
    outputs = [grpcclient.InferRequestedOutput(o["name"]) for o in config["outputs"]]
    res = client.infer(model, grpc_inputs(config, arrays, datatypes), outputs=outputs, request_id="py-2")
    check(res.get_response().id == "py-2", f"gRPC {model}: request id echoed")
    return res.as_numpy(config["outputs"][0]["name"])


def expect_error(fn, grpc_code, http_status, needle, what):
    try:
        fn()
    except InferenceServerException as e:
        status, msg = str(e.status()), e.message() or ""
        want = grpc_code if grpc_code else http_status
        check(want in status, f"{what}: status {status!r} should be {want!r} ({msg})")
        check(needle in msg, f"{what}: message {msg!r} should name {needle!r}")
        print(f"  ok   {what}: {status} {msg}")
        return
    raise AssertionError(f"{what}: expected an error")


# ---------------------------------------------------------------- the test


def run(args):
    repo = args.repository
    models = {}
    for name in sorted(os.listdir(repo)):
        cfg_path = os.path.join(repo, name, "config.toml")
        if os.path.exists(cfg_path):
            with open(cfg_path, "rb") as f:
                models[name] = tomllib.load(f)
    check(len(models) >= 2, f"repository has models: {list(models)}")

    h = httpclient.InferenceServerClient(args.http)
    g = grpcclient.InferenceServerClient(args.grpc)

    for label, c in (("HTTP", h), ("gRPC", g)):
        check(c.is_server_live(), f"{label}: server live")
        check(c.is_server_ready(), f"{label}: server ready")
        md = c.get_server_metadata()
        name = md["name"] if isinstance(md, dict) else md.name
        check(name == "cohost", f"{label}: server metadata name is cohost ({name})")
    print("  ok   health and server metadata over HTTP and gRPC")

    for model, cfg in models.items():
        # Readiness, metadata, config (perf_analyzer reads the config before it benchmarks).
        for label, c in (("HTTP", h), ("gRPC", g)):
            check(c.is_model_ready(model), f"{label}: {model} ready")
        hm = h.get_model_metadata(model)
        gm = g.get_model_metadata(model, as_json=True)
        check([i["name"] for i in hm["inputs"]] == [i["name"] for i in cfg["inputs"]], f"HTTP metadata inputs of {model}")
        check([i["name"] for i in gm["inputs"]] == [i["name"] for i in cfg["inputs"]], f"gRPC metadata inputs of {model}")
        check([int(s) for s in gm["inputs"][0]["shape"]] == cfg["inputs"][0]["dims"], f"gRPC metadata shape of {model}")
        hc = h.get_model_config(model)
        gc = g.get_model_config(model, as_json=True)["config"]
        for label, c in (("HTTP", hc), ("gRPC", gc)):
            check(int(c["max_batch_size"]) == cfg["max_batch_size"], f"{label} config max_batch_size of {model}")
            for got, spec in zip(c["input"], cfg["inputs"]):
                check(got["data_type"] == "TYPE_" + spec["datatype"], f"{label} config {model}.{spec['name']} data_type {got['data_type']}")
                check([int(d) for d in got["dims"]] == spec["dims"][1:], f"{label} config {model}.{spec['name']} dims without batch")
            check(("dynamic_batching" in c) == (cfg["batching"]["policy"] != "none"), f"{label} config {model} dynamic_batching")
        print(f"  ok   {model}: ready, metadata and config over HTTP and gRPC")

        # Inference: numpy reference vs HTTP JSON, HTTP binary, gRPC raw.
        arrays = sample_inputs(cfg, 5, seed=len(model))
        want = reference(os.path.join(repo, model), cfg, arrays)
        got = {
            "HTTP JSON": http_infer(h, model, cfg, arrays, binary=False),
            "HTTP binary": http_infer(h, model, cfg, arrays, binary=True),
            "gRPC": grpc_infer(g, model, cfg, arrays),
        }
        for label, out in got.items():
            check(out.shape == want.shape, f"{label} {model}: shape {out.shape} vs {want.shape}")
            err = float(np.max(np.abs(out.astype(np.float64) - want)))
            check(np.allclose(out, want, rtol=1e-4, atol=1e-5), f"{label} {model}: max |diff| {err:.2e} vs numpy")
            print(f"  ok   {label:12s} {model}: {out.shape} matches numpy (max |diff| {err:.1e})")
        check(np.array_equal(got["gRPC"], got["HTTP binary"]), f"{model}: gRPC and HTTP outputs identical")

        # Lossless datatype conversion at the edge: FP64 and FP16 for FP32 inputs.
        if cfg["inputs"][0]["datatype"] == "FP32":
            for dt, np_dt in (("FP64", np.float64), ("FP16", np.float16)):
                conv = [a.astype(np_dt).astype(np.float32) if a.dtype == np.float32 else a for a in arrays]
                sent = [a.astype(np_dt) if a.dtype == np.float32 else a for a in arrays]
                dts = [dt if s["datatype"] == "FP32" else s["datatype"] for s in cfg["inputs"]]
                out = grpc_infer(g, model, cfg, sent, datatypes=dts)
                ref = reference(os.path.join(repo, model), cfg, conv)
                check(np.allclose(out, ref, rtol=1e-4, atol=1e-5), f"gRPC {dt} input for {model}")
            print(f"  ok   gRPC FP64 and FP16 (raw) inputs converted losslessly for {model}")

        # The load counter arrives as trailing metadata on ModelInfer.
        req = service_pb2.ModelInferRequest(model_name=model)
        for spec, a in zip(cfg["inputs"], arrays):
            t = req.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=list(a.shape))
            req.raw_input_contents.append(a.tobytes())
        resp, call = g._client_stub.ModelInfer.with_call(req)
        trailing = dict(call.trailing_metadata())
        initial = dict(call.initial_metadata())
        load = trailing.get("endpoint-load-metrics", "")
        check(load.startswith("TEXT named_metrics.model_load="), f"gRPC trailing load metadata for {model}: {load!r}")
        check("endpoint-load-metrics" not in initial, "load metadata is trailing, not initial")
        check(len(resp.raw_output_contents) == 1, "raw outputs for a raw request")
        print(f"  ok   gRPC trailing metadata endpoint-load-metrics: {load}")
        bad = service_pb2.ModelInferRequest(model_name=model)
        bad.inputs.add(name=cfg["inputs"][0]["name"], datatype="FP32", shape=[1, 1])
        bad.raw_input_contents.append(b"\0\0\0\0")
        try:
            g._client_stub.ModelInfer.with_call(bad)
            raise AssertionError("a wrong shape should fail")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"raw stub wrong shape: {e.code()}")
            load = dict(e.trailing_metadata()).get("endpoint-load-metrics", "")
            check(load.startswith("TEXT "), f"error trailers carry the load for {model}: {load!r}")

        # Statistics over both transports.
        hs = h.get_inference_statistics(model)["model_stats"][0]
        gs = g.get_inference_statistics(model, as_json=True)["model_stats"][0]
        check(int(hs["inference_count"]) >= 15, f"HTTP stats inference_count of {model}: {hs['inference_count']}")
        check(int(gs["inference_count"]) >= 15, f"gRPC stats inference_count of {model}: {gs['inference_count']}")
        print(f"  ok   statistics of {model}: inference_count {gs['inference_count']}, execution_count {gs['execution_count']}")

    # Streaming inference (ModelStreamInfer) with the gRPC client's stream API.
    model, cfg = next(iter(models.items()))
    results = queue.Queue()
    g.start_stream(callback=lambda result, error: results.put((result, error)))
    arrays = sample_inputs(cfg, 2, seed=3)
    for k in range(3):
        g.async_stream_infer(model, grpc_inputs(cfg, arrays), request_id=f"s{k}")
    got = [results.get(timeout=30) for _ in range(3)]
    g.stop_stream()
    want = reference(os.path.join(repo, model), cfg, arrays)
    for result, error in got:
        check(error is None, f"stream error: {error}")
        check(np.allclose(result.as_numpy(cfg["outputs"][0]["name"]), want, rtol=1e-4, atol=1e-5), "stream output")
    print(f"  ok   gRPC stream: 3 responses for {model}")

    # Repository index.
    hi = {m["name"] for m in h.get_model_repository_index()}
    gi = {m["name"] for m in g.get_model_repository_index(as_json=True)["models"]}
    check(set(models) <= hi and set(models) <= gi, f"repository index lists {sorted(models)}: {hi} {gi}")
    print(f"  ok   repository index over HTTP and gRPC: {sorted(gi)}")

    # Errors: status and message.
    model, cfg = next((m, c) for m, c in models.items() if c["family"] == "mlp")
    good = sample_inputs(cfg, 2, seed=1)
    expect_error(lambda: grpc_infer(g, "no-such-model", cfg, good), "NOT_FOUND", None, "no-such-model", "gRPC unknown model")
    expect_error(lambda: http_infer(h, "no-such-model", cfg, good, True), None, "404", "no-such-model", "HTTP unknown model")
    bad = [np.zeros((2, good[0].shape[1] + 1), dtype=np.float32)]
    expect_error(lambda: grpc_infer(g, model, cfg, bad), "INVALID_ARGUMENT", None, cfg["inputs"][0]["name"], "gRPC wrong shape")
    expect_error(lambda: http_infer(h, model, cfg, bad, False), None, "400", cfg["inputs"][0]["name"], "HTTP wrong shape")
    expect_error(lambda: g.load_model(model), "FAILED_PRECONDITION", None, "explicit", "gRPC load refused without explicit control")
    dlrm = next((m for m, c in models.items() if c["family"] == "dlrm"), None)
    if dlrm:
        dcfg = models[dlrm]
        arrays = sample_inputs(dcfg, 1, seed=2)
        arrays[1][0, 0] = 10**9
        expect_error(lambda: grpc_infer(g, dlrm, dcfg, arrays), "INVALID_ARGUMENT", None, str(10**9), "gRPC out-of-range embedding index")
    check(g.is_server_live() and h.is_server_live(), "server still live after errors")

    print(f"PASS: {len(CHECKS)} checks with tritonclient over HTTP and gRPC")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--http", required=True, help="host:port of the HTTP endpoint")
    ap.add_argument("--grpc", required=True, help="host:port of the gRPC endpoint")
    ap.add_argument("--repository", required=True, help="the repository the server serves")
    args = ap.parse_args()
    try:
        run(args)
    except Exception:  # noqa: BLE001 - any failure fails the run
        traceback.print_exc()
        print(f"FAIL after {len(CHECKS)} passing checks", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
