"""cohost's CPU forward against ONNX Runtime on the same weights and inputs (issue 22).

Driven by scripts/compare-ort.sh. For each preset: starts cohost's in-process driver
(`models/examples/compare_ort.rs`), which writes the model's safetensors and 512 rows of
inputs; builds the ONNX graph of the same model from those safetensors; checks ORT's
outputs against cohost's at every batch size; then measures both, interleaved and
repeated, per thread (one cohost lane vs ORT with 1 intra-op thread) and per machine
(cohost on LANES lanes vs ORT with LANES intra-op threads, and vs LANES callers of ORT
with 1 thread each), and prints per-batch latency, rows/s, ratios and their spread.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

TOL = 1e-5


def gemm_stack(nodes, inits, t, prefix, x, acts):
    """Gemm(x, W, b, transB) per layer `prefix.{i}`, then the layer's activation."""
    for i, act in enumerate(acts):
        w, b = f"{prefix}.{i}.weight", f"{prefix}.{i}.bias"
        inits += [numpy_helper.from_array(t[w], w), numpy_helper.from_array(t[b], b)]
        y = f"{prefix}.{i}.out"
        nodes.append(helper.make_node("Gemm", [x, w, b], [y], transB=1))
        if act:
            nodes.append(helper.make_node(act, [y], [y + "." + act]))
            y += "." + act
        x = y
    return x


def layer_count(t, prefix):
    return sum(1 for k in t if k.startswith(prefix + ".") and k.endswith(".weight"))


def mlp_graph(t, width):
    n = layer_count(t, "layers")
    nodes, inits = [], []
    # mlp-small has no output sigmoid (the presets used here never set it).
    y = gemm_stack(nodes, inits, t, "layers", "input", ["Relu"] * (n - 1) + [None])
    out_w = t[f"layers.{n - 1}.weight"].shape[0]
    g = helper.make_graph(
        nodes + [helper.make_node("Identity", [y], ["output"])],
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", out_w])],
        inits,
    )
    return g


def dlrm_graph(t, dense_w, bags):
    """models/src/dlrm.rs: bottom MLP (ReLU everywhere); per table a Gather of its bag and
    a ReduceSum; dot interaction [x, pooled..] as a batched MatMul and a Gather of the
    strict lower triangle (i then j < i); concat [x, Z]; top MLP (ReLU, last linear);
    sigmoid."""
    nb, nt = layer_count(t, "bottom"), layer_count(t, "top")
    nodes, inits = [], []
    x = gemm_stack(nodes, inits, t, "bottom", "dense", ["Relu"] * nb)
    d = t[f"bottom.{nb - 1}.weight"].shape[0]
    const = lambda name, arr: inits.append(numpy_helper.from_array(np.asarray(arr), name))
    const("axis1", np.array([1], dtype=np.int64))
    feats = [x]
    for i, (off, bag) in enumerate(bags):
        e = f"embeddings.{i}.weight"
        inits.append(numpy_helper.from_array(t[e], e))
        const(f"s{i}.lo", np.array([off], dtype=np.int64))
        const(f"s{i}.hi", np.array([off + bag], dtype=np.int64))
        nodes.append(helper.make_node("Slice", ["sparse", f"s{i}.lo", f"s{i}.hi", "axis1"], [f"idx{i}"]))
        nodes.append(helper.make_node("Gather", [e, f"idx{i}"], [f"rows{i}"], axis=0))  # [N, bag, d]
        nodes.append(helper.make_node("ReduceSum", [f"rows{i}", "axis1"], [f"pooled{i}"], keepdims=0))
        feats.append(f"pooled{i}")
    f = len(feats)
    for j, name in enumerate(feats):
        nodes.append(helper.make_node("Unsqueeze", [name, "axis1"], [f"u{j}"]))
    nodes.append(helper.make_node("Concat", [f"u{j}" for j in range(f)], ["T"], axis=1))  # [N, f, d]
    nodes.append(helper.make_node("Transpose", ["T"], ["Tt"], perm=[0, 2, 1]))
    nodes.append(helper.make_node("MatMul", ["T", "Tt"], ["Z"]))  # [N, f, f]
    const("zshape", np.array([0, f * f], dtype=np.int64))
    nodes.append(helper.make_node("Reshape", ["Z", "zshape"], ["Zf"]))
    tri = [i * f + j for i in range(1, f) for j in range(i)]
    const("tri", np.array(tri, dtype=np.int64))
    nodes.append(helper.make_node("Gather", ["Zf", "tri"], ["Zl"], axis=1))
    nodes.append(helper.make_node("Concat", [x, "Zl"], ["inter"], axis=1))
    y = gemm_stack(nodes, inits, t, "top", "inter", ["Relu"] * (nt - 1) + [None])
    nodes.append(helper.make_node("Sigmoid", [y], ["output"]))
    g = helper.make_graph(
        nodes,
        "dlrm",
        [
            helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["N", dense_w]),
            helper.make_tensor_value_info("sparse", TensorProto.INT64, ["N", sum(b for _, b in bags)]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    return g


class Cohost:
    """The Rust driver over stdin/stdout."""

    def __init__(self, binary, preset, work, table_rows):
        self.p = subprocess.Popen(
            [binary, preset, work, str(table_rows)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ready = json.loads(self.p.stdout.readline())

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = json.loads(self.p.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        self.p.wait()


def session(model_bytes, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def ort_time(sessions, feeds, rows, secs):
    """Each session on its own Python thread (ORT releases the GIL in run), `secs` seconds
    after a warm-up of secs/5: per-batch latency quantiles and rows/s, as the Rust side."""
    lat = [[] for _ in sessions]
    took = [0.0 for _ in sessions]

    def loop(i, s):
        warm = time.perf_counter()
        while time.perf_counter() - warm < secs / 5:
            s.run(None, feeds)
        start = time.perf_counter()
        while time.perf_counter() - start < secs:
            t = time.perf_counter()
            s.run(None, feeds)
            lat[i].append((time.perf_counter() - t) * 1e6)
        took[i] = time.perf_counter() - start

    threads = [threading.Thread(target=loop, args=(i, s)) for i, s in enumerate(sessions)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    a = np.sort(np.concatenate([np.array(x) for x in lat]))
    q = lambda p: float(a[int(round((len(a) - 1) * p))])
    return {"median_us": q(0.5), "p10_us": q(0.1), "p90_us": q(0.9), "batches": len(a),
            "rows_per_s": sum(len(x) * rows / s for x, s in zip(lat, took))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--presets", default="mlp-small,dlrm-small")
    ap.add_argument("--batches", default="1,4,16,64,256,512")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=float, default=0.3)
    ap.add_argument("--lanes", type=int, default=os.cpu_count())
    ap.add_argument("--table-rows", type=int, default=10_000)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}; "
          f"{a.rounds} rounds x {a.secs}s per measurement; machine lanes {a.lanes}")
    results = {}
    ok = True
    for preset in a.presets.split(","):
        work = os.path.join(a.work, preset)
        c = Cohost(a.bin, preset, work, a.table_rows)
        print(f"\n== {preset}: cohost ISA {c.ready['isa']}, {c.ready['flops_per_row']} FLOP/row")
        t = load_file(os.path.join(work, "model.safetensors"))
        dense = np.fromfile(os.path.join(work, "dense.f32"), dtype="<f4")
        if preset.startswith("mlp"):
            width = t["layers.0.weight"].shape[1]
            graph, names = mlp_graph(t, width), ["input"]
            arrays = [dense.reshape(-1, width)]
        else:
            dense_w = t["bottom.0.weight"].shape[1]
            sparse = np.fromfile(os.path.join(work, "sparse.i64"), dtype="<i8")
            tables = layer_count(t, "embeddings")
            sparse = sparse.reshape(512, -1)
            bag = sparse.shape[1] // tables  # the presets measured here use one bag size
            bags = [(i * bag, bag) for i in range(tables)]
            graph, names = dlrm_graph(t, dense_w, bags), ["dense", "sparse"]
            arrays = [dense.reshape(-1, dense_w), sparse]
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.checker.check_model(model)
        mb = model.SerializeToString()
        one = session(mb, 1)
        feeds_of = lambda n: {k: np.ascontiguousarray(v[:n]) for k, v in zip(names, arrays)}
        # Equality at every batch size.
        for n in batches:
            c.ask(f"out {n}")
            got = np.fromfile(os.path.join(work, f"out-{n}.f32"), dtype="<f4")
            want = one.run(None, feeds_of(n))[0].reshape(-1)
            err = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0)))
            status = "ok" if err <= TOL else "MISMATCH"
            ok &= err <= TOL
            print(f"  check batch {n:4d}: max |cohost - ort| / max(|ort|, 1) = {err:.2e} {status}")
        machine_one = [session(mb, 1) for _ in range(a.lanes)]
        machine_all = session(mb, a.lanes)
        rows = {n: {k: [] for k in ("c1", "o1", "cm", "om", "omc")} for n in batches}
        for r in range(a.rounds):
            for n in batches:
                f = feeds_of(n)
                # Alternate which engine goes first in each round.
                steps = [
                    ("c1", lambda: c.ask(f"time {n} 1 {a.secs}")),
                    ("o1", lambda: ort_time([one], f, n, a.secs)),
                    ("cm", lambda: c.ask(f"time {n} {a.lanes} {a.secs}")),
                    ("om", lambda: ort_time([machine_all], f, n, a.secs)),
                    ("omc", lambda: ort_time(machine_one, f, n, a.secs)),
                ]
                if r % 2:
                    steps.reverse()
                for key, fn in steps:
                    rows[n][key].append(fn())
        c.close()
        results[preset] = rows
        fpr = c.ready["flops_per_row"]
        med = lambda xs, k: float(np.median([x[k] for x in xs]))
        print(f"\n  per thread (one cohost lane vs ORT intra_op=1); median of {a.rounds} rounds, "
              "ratio = ORT latency / cohost latency (>1: cohost faster), min..max over rounds")
        print(f"  {'batch':>5} {'cohost us':>10} {'ORT us':>10} {'ratio':>6} {'spread':>13} "
              f"{'cohost rows/s':>14} {'ORT rows/s':>12} {'cohost GFLOP/s':>14}")
        for n in batches:
            x = rows[n]
            rat = [o["median_us"] / c_["median_us"] for c_, o in zip(x["c1"], x["o1"])]
            cu, ou = med(x["c1"], "median_us"), med(x["o1"], "median_us")
            print(f"  {n:5d} {cu:10.1f} {ou:10.1f} {np.median(rat):6.2f} "
                  f"{min(rat):6.2f}..{max(rat):5.2f} {med(x['c1'], 'rows_per_s'):14.0f} "
                  f"{med(x['o1'], 'rows_per_s'):12.0f} {fpr * n / cu / 1e3:14.1f}")
        print(f"\n  per machine ({a.lanes} cores): cohost {a.lanes} lanes vs ORT intra_op={a.lanes} "
              f"(one caller) and vs {a.lanes} callers x intra_op=1; rows/s, ratio = cohost / ORT")
        print(f"  {'batch':>5} {'cohost rows/s':>14} {'ORT x1 rows/s':>14} {'ratio':>6} {'spread':>13} "
              f"{'ORT callers':>12} {'ratio':>6} {'spread':>13} {'ORT x1 us':>10}")
        for n in batches:
            x = rows[n]
            r1 = [c_["rows_per_s"] / o["rows_per_s"] for c_, o in zip(x["cm"], x["om"])]
            r2 = [c_["rows_per_s"] / o["rows_per_s"] for c_, o in zip(x["cm"], x["omc"])]
            print(f"  {n:5d} {med(x['cm'], 'rows_per_s'):14.0f} {med(x['om'], 'rows_per_s'):14.0f} "
                  f"{np.median(r1):6.2f} {min(r1):6.2f}..{max(r1):5.2f} "
                  f"{med(x['omc'], 'rows_per_s'):12.0f} {np.median(r2):6.2f} "
                  f"{min(r2):6.2f}..{max(r2):5.2f} {med(x['om'], 'median_us'):10.1f}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    if not ok:
        print("\nOUTPUTS DIFFER (see the checks above)")
        sys.exit(1)


if __name__ == "__main__":
    main()
