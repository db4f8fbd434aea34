"""The balancing demo's client (run by scripts/balance-demo.sh): one unmodified grpcio
channel over three cohost replicas, `round_robin` against `weighted_round_robin` (per-call
ORCA reports, and out-of-band ones), at the same open-loop rate, interleaved and repeated.

Replica C also serves a second, heavier model kept busy by a side load, so each request
of the shared model costs it more (it waits for C's one lane). Each replica serves the shared model
under its own version number (A 1, B 2, C 3): the response's model_version says which
replica answered, so the client needs no cooperation from the balancer.

The ModelInfer messages are encoded here by hand (a few protobuf fields), so no inference
stubs are needed; the ORCA reports printed per arm are read with xds-protos.
"""

import argparse
import json
import random
import struct
import threading
import time

import grpc
from google.protobuf import duration_pb2
from xds.data.orca.v3 import orca_load_report_pb2
from xds.service.orca.v3 import orca_pb2

INFER = "/inference.GRPCInferenceService/ModelInfer"
# The out-of-band method's path, from xds-protos' own descriptor (it ships no stubs).
_METHOD = orca_pb2.DESCRIPTOR.services_by_name["OpenRcaService"].methods_by_name["StreamCoreMetrics"]
STREAM = f"/{_METHOD.containing_service.full_name}/{_METHOD.name}"


def stream_core_metrics(channel):
    """The OpenRcaService/StreamCoreMetrics call on `channel`."""
    return channel.unary_stream(
        STREAM,
        request_serializer=orca_pb2.OrcaLoadReportRequest.SerializeToString,
        response_deserializer=orca_load_report_pb2.OrcaLoadReport.FromString)
NAMES = {"1": "A", "2": "B", "3": "C"}


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def infer_request(model, rows, width, seed):
    rnd = random.Random(seed)
    data = struct.pack(f"<{rows * width}f", *(rnd.uniform(-1, 1) for _ in range(rows * width)))
    shape = varint(rows) + varint(width)
    tensor = field(1, b"input") + field(2, b"FP32") + field(3, shape)
    return field(1, model.encode()) + field(5, tensor) + field(7, data)


def model_version(response):
    """Field 2 (model_version) of a ModelInferResponse."""
    i = 0
    while i < len(response):
        key, i = read_varint(response, i)
        number, kind = key >> 3, key & 7
        if kind == 0:
            _, i = read_varint(response, i)
        elif kind == 2:
            n, i = read_varint(response, i)
            if number == 2:
                return response[i:i + n].decode()
            i += n
        elif kind == 1:
            i += 8
        elif kind == 5:
            i += 4
        else:
            raise ValueError(f"wire type {kind}")
    return ""


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def p99(values):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


class OpenLoop:
    """Poisson arrivals at `rate`, each sent as a future on `call`; the results are kept."""

    def __init__(self, call, request, rate, seed):
        self.call, self.request, self.rate = call, request, rate
        self.rnd = random.Random(seed)
        self.lock = threading.Lock()
        self.done = []  # (sent_at, latency_s, version or None, error or None)
        self.stop = threading.Event()

    def run(self, seconds):
        end = time.perf_counter() + seconds
        at = time.perf_counter()
        pending = []
        while not self.stop.is_set():
            at += self.rnd.expovariate(self.rate)
            if at >= end:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            f = self.call.future(self.request, timeout=10)
            f.add_done_callback(lambda f, sent=sent: self.record(f, sent))
            pending.append(f)
        for f in pending:
            try:
                f.result()
            except grpc.RpcError:
                pass

    def record(self, f, sent):
        latency = time.perf_counter() - sent
        try:
            version, error = model_version(f.result()), None
        except grpc.RpcError as e:
            version, error = None, e.code().name
        with self.lock:
            self.done.append((sent, latency, version, error))


def channel(targets, policy):
    config = {"loadBalancingConfig": [policy]}
    options = [
        ("grpc.service_config", json.dumps(config)),
        # Fresh subchannels (and so fresh weights) for every arm.
        ("grpc.use_local_subchannel_pool", 1),
        # The default :authority would be the whole address list, which is no valid
        # authority: the server (hyper) resets such streams with PROTOCOL_ERROR.
        ("grpc.default_authority", "cohost"),
    ]
    ch = grpc.insecure_channel("ipv4:" + ",".join(targets), options=options)
    grpc.channel_ready_future(ch).result(timeout=30)
    return ch


def orca_report(addr):
    """One out-of-band report of a replica (the first is sent at once)."""
    with grpc.insecure_channel(addr) as ch:
        stream = stream_core_metrics(ch)(
            orca_pb2.OrcaLoadReportRequest(report_interval=duration_pb2.Duration(seconds=1)),
            timeout=10)
        r = next(stream)
        stream.cancel()
        return r


def calibrate(addr, request, n):
    """Median seconds of `n` sequential calls."""
    with grpc.insecure_channel(addr) as ch:
        call = ch.unary_unary(INFER)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            call(request, timeout=30)
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpc", required=True, help="A,B,C gRPC addresses (C is the busy one)")
    ap.add_argument("--model", default="m")
    ap.add_argument("--side-model", default="side")
    ap.add_argument("--width", type=int, default=8, help="input width of --model")
    ap.add_argument("--side-width", type=int, default=256, help="input width of --side-model")
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--side-rows", type=int, default=1)
    ap.add_argument("--side-busy", type=float, default=0.75,
                    help="fraction of C's lane the side load keeps busy (sets its rate)")
    ap.add_argument("--rate", type=float, default=60.0,
                    help="requests per second of --model over A, B and C together")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--settle", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    targets = a.grpc.split(",")
    busy_addr = targets[2]
    req = infer_request(a.model, a.rows, a.width, 1)
    side_req = infer_request(a.side_model, a.side_rows, a.side_width, 2)

    t_m = calibrate(busy_addr, req, 40)
    t_side = calibrate(busy_addr, side_req, 10)
    side_rate = a.side_busy / t_side
    rate = a.rate
    print(f"calibration (sequential calls to C, idle): {a.model} {t_m * 1e3:.2f} ms, "
          f"{a.side_model} {t_side * 1e3:.2f} ms")
    print(f"offered: {rate:.0f} req/s of {a.model} over A,B,C (Poisson, open loop); "
          f"side load {side_rate:.1f} req/s of {a.side_model} on C (~{a.side_busy:.0%} of its lane)")
    side_ch = grpc.insecure_channel(busy_addr)
    side = OpenLoop(side_ch.unary_unary(INFER), side_req, side_rate, 99)
    total = a.rounds * 3 * (a.settle + a.seconds) + 60
    side_thread = threading.Thread(target=side.run, args=(total,), daemon=True)
    side_thread.start()
    # Sequential calls overstate the lane time (they include the front end and the client):
    # rescale the side rate once by the lane busy fraction C itself reports.
    time.sleep(4)
    busy = orca_report(busy_addr).cpu_utilization
    if busy > 0:
        side.rate = min(side.rate * 3, side.rate * a.side_busy / busy)
    print(f"side load: C reported cpu_utilization {busy:.2f}; side rate now "
          f"{side.rate:.1f} req/s", flush=True)
    time.sleep(3)

    wrr = {"blackoutPeriod": "1s", "weightUpdatePeriod": "0.5s",
           "weightExpirationPeriod": "60s", "errorUtilizationPenalty": 1.0}
    policies = [
        ("round_robin", {"round_robin": {}}),
        ("wrr per-call", {"weighted_round_robin": wrr}),
        ("wrr oob", {"weighted_round_robin": {**wrr, "enableOobLoadReport": True,
                                              "oobReportingPeriod": "1s"}}),
    ]
    results = []
    for rnd in range(a.rounds):
        for name, policy in policies:
            ch = channel(targets, policy)
            load = OpenLoop(ch.unary_unary(INFER), req, rate, 1000 * rnd + len(results))
            t0 = time.perf_counter()
            load.run(a.settle + a.seconds)
            measured = [d for d in load.done if d[0] >= t0 + a.settle]
            reports = {NAMES[str(i + 1)]: orca_report(t) for i, t in enumerate(targets)}
            ch.close()
            arm = {"round": rnd + 1, "policy": name, "requests": len(measured),
                   "errors": sum(1 for d in measured if d[3]),
                   "p99_ms": p99([d[1] for d in measured]) * 1e3, "replicas": {}}
            for v, r in sorted(NAMES.items()):
                mine = [d for d in measured if d[2] == v]
                arm["replicas"][r] = {
                    "share": len(mine) / max(1, len(measured)),
                    "p99_ms": p99([d[1] for d in mine]) * 1e3,
                    "orca": {"application_utilization": reports[r].application_utilization,
                             "cpu_utilization": reports[r].cpu_utilization,
                             "rps_fractional": reports[r].rps_fractional,
                             "eps": reports[r].eps},
                }
            results.append(arm)
            reps = "  ".join(
                f"{r}: {x['share'] * 100:4.1f}% p99 {x['p99_ms']:6.1f} ms "
                f"(util {x['orca']['application_utilization']:.2f}, "
                f"{x['orca']['rps_fractional']:.0f} rps)"
                for r, x in arm["replicas"].items())
            print(f"round {rnd + 1} {name:13s} n={arm['requests']:5d} err={arm['errors']:3d} "
                  f"p99 {arm['p99_ms']:6.1f} ms | {reps}", flush=True)
    side.stop.set()
    side_errors = sum(1 for d in side.done if d[3])
    summary = {"rate": rate, "side_rate": side.rate, "t_m_ms": t_m * 1e3,
               "t_side_ms": t_side * 1e3, "side_errors": side_errors, "arms": results}
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"side load: {len(side.done)} requests, {side_errors} errors")
    print("summary (mean over rounds):")
    for name, _ in policies:
        arms = [r for r in results if r["policy"] == name]
        line = f"  {name:13s} overall p99 {sum(r['p99_ms'] for r in arms) / len(arms):6.1f} ms, " \
               f"errors {sum(r['errors'] for r in arms)}"
        for rep in "ABC":
            share = sum(r["replicas"][rep]["share"] for r in arms) / len(arms)
            p = sum(r["replicas"][rep]["p99_ms"] for r in arms) / len(arms)
            line += f" | {rep} {share * 100:4.1f}% p99 {p:6.1f} ms"
        print(line)


if __name__ == "__main__":
    main()
