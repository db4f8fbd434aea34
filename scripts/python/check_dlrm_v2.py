#!/usr/bin/env python3
"""Checks a running cohost serving the dlrm-v2 preset with Triton's Python client.

Sends the same batches over HTTP (JSON and binary tensors) and gRPC, and compares every
output with a float64 numpy recomputation of MLPerf DLRM-v2's forward from the model's
safetensors: bottom MLP (ReLU), per-table sum bags, TorchRec's low-rank DCNv2 cross layers
x_{l+1} = x_0 * (W_l (V_l x_l) + b_l) + x_l over concat(bottom, bags), top MLP, sigmoid.
Also checks that the tables were placed through the offload tiers (the /metrics placement
gauges), so the run exercises the host tier. Exits non-zero on the first failure.
"""

import argparse
import json
import os
import struct
import sys
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

try:
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib

REL_TOL = 1e-5  # relative, f32 forward (3456-wide GEMMs, sigmoid) against float64


def load_safetensors(path):
    """Maps the file and returns name -> float32 numpy views (no copy of the tables)."""
    blob = np.memmap(path, dtype=np.uint8, mode="r")
    n = struct.unpack("<Q", bytes(blob[:8]))[0]
    header = json.loads(bytes(blob[8 : 8 + n]))
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", f"{name}: {meta['dtype']}"
        a, b = meta["data_offsets"]
        out[name] = blob[8 + n + a : 8 + n + b].view(np.float32).reshape(meta["shape"])
    return out


def mlp(w, prefix, x, layers, last):
    for i in range(layers):
        x = x @ w[f"{prefix}.{i}.weight"].astype(np.float64).T + w[f"{prefix}.{i}.bias"]
        if i < layers - 1 or last == "relu":
            x = np.maximum(x, 0.0)
    return x


def reference(w, p, dense, sparse):
    x = mlp(w, "bottom", dense.astype(np.float64), len(p["bottom"]), "relu")
    feats, off = [x], 0
    for t, hot in enumerate(p["multi_hot"]):
        table = w[f"embeddings.{t}.weight"]
        feats.append(table[sparse[:, off : off + hot]].astype(np.float64).sum(axis=1))
        off += hot
    x0 = np.concatenate(feats, axis=1)
    xl = x0
    layer = 0
    while f"crossnet.{layer}.v" in w:
        v = w[f"crossnet.{layer}.v"].astype(np.float64)
        u = w[f"crossnet.{layer}.w"].astype(np.float64)
        xl = x0 * ((xl @ v.T) @ u.T + w[f"crossnet.{layer}.bias"]) + xl
        layer += 1
    assert layer == 3, f"expected 3 cross layers, found {layer}"
    z = mlp(w, "top", xl, len(p["top"]), "none")
    return 1.0 / (1.0 + np.exp(-z))


def sample(p, rows, rng):
    dense = rng.uniform(-1, 1, size=(rows, p["dense_features"])).astype(np.float32)
    cols = []
    for size, hot in zip(p["table_sizes"], p["multi_hot"]):
        # Skewed like real traffic (most lookups hit a few rows) but reaching the last row.
        idx = np.minimum(rng.zipf(1.2, size=(rows, hot)) - 1, size - 1)
        idx[0, 0] = size - 1
        cols.append(idx)
    return dense, np.concatenate(cols, axis=1).astype(np.int64)


def check_close(got, want, what):
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    err = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-6))
    if not err <= REL_TOL:
        raise AssertionError(f"{what}: max relative error {err:.3g} > {REL_TOL}")
    print(f"  ok   {what}: {want.shape[0]} rows, max relative error {err:.2e}")


def placements(http):
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=10).read().decode()
    seen = {}
    for line in text.splitlines():
        if line.startswith("cohost_embedding_table_placement{") and 'model="dlrm-v2"' in line:
            labels = line[line.index("{") + 1 : line.index("}")]
            kv = dict(part.split("=", 1) for part in labels.split(","))
            seen[kv["table"].strip('"')] = kv["placement"].strip('"')
    return seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--model-dir", required=True)
    args = ap.parse_args()
    with open(os.path.join(args.model_dir, "config.toml"), "rb") as f:
        cfg = tomllib.load(f)
    p = cfg["dlrm"]
    w = load_safetensors(os.path.join(args.model_dir, "1", "model.safetensors"))
    rows_total = sum(p["table_sizes"])
    print(f"  dlrm-v2: {len(p['table_sizes'])} tables, {rows_total} rows of dim {p['embedding_dim']}")

    h = httpclient.InferenceServerClient(args.http, network_timeout=300.0, connection_timeout=300.0)
    g = grpcclient.InferenceServerClient(args.grpc)
    if not (h.is_model_ready("dlrm-v2") and g.is_model_ready("dlrm-v2")):
        index = h.get_model_repository_index()
        raise AssertionError(f"dlrm-v2 not ready: {index}")
    rng = np.random.default_rng(21)
    for rows in (1, 7, 64):
        dense, sparse = sample(p, rows, rng)
        want = reference(w, p, dense, sparse)
        for binary in (False, True):
            ins = [httpclient.InferInput("dense", list(dense.shape), "FP32"),
                   httpclient.InferInput("sparse", list(sparse.shape), "INT64")]
            ins[0].set_data_from_numpy(dense, binary_data=binary)
            ins[1].set_data_from_numpy(sparse, binary_data=binary)
            out = [httpclient.InferRequestedOutput("prediction", binary_data=binary)]
            res = h.infer("dlrm-v2", ins, outputs=out)
            check_close(res.as_numpy("prediction"), want, f"HTTP {'binary' if binary else 'JSON'} batch {rows}")
        ins = [grpcclient.InferInput("dense", list(dense.shape), "FP32"),
               grpcclient.InferInput("sparse", list(sparse.shape), "INT64")]
        ins[0].set_data_from_numpy(dense)
        ins[1].set_data_from_numpy(sparse)
        res = g.infer("dlrm-v2", ins, outputs=[grpcclient.InferRequestedOutput("prediction")])
        check_close(res.as_numpy("prediction"), want, f"gRPC batch {rows}")

    placed = placements(args.http)
    offloaded = sorted(t for t, where in placed.items() if where != "resident")
    print(f"  placement: {len(placed)} tables, offloaded {offloaded}")
    if len(placed) != len(p["table_sizes"]) or not offloaded:
        raise AssertionError(f"expected every table placed and some offloaded: {placed}")
    print("dlrm-v2 served through tritonclient: all outputs match the float64 reference")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one clear line for the test log
        print(f"FAILED: {e}", file=sys.stderr)
        raise
