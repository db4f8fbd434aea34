"""Helpers for scripts/compare-mlserver.sh (standard library only, run with the venv's python).

    tools.py port                               print a free loopback TCP port
    tools.py render TEMPLATE OUT KEY=VALUE...   fill @KEY@ placeholders (values JSON-escaped)
    tools.py adaptive CONFIG_TOML P99_MS        switch a cohost config.toml to adaptive batching
    tools.py io CONFIG_TOML                     INPUT_NAME=.. INPUT_WIDTH=.. OUTPUT_NAME=.. OUTPUT_WIDTH=..
    tools.py ready URL [TIMEOUT_S]              wait until GET URL answers 200
    tools.py check A_URL B_URL MODEL CONFIG     same random input to both servers, compare outputs
    tools.py summary COHOST_JSON MLSERVER_JSON  the two peak throughputs and their ratio
"""

from __future__ import annotations

import json
import random
import re
import socket
import sys
import time
import tomllib
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(template: str, out: str, pairs: list[str]) -> None:
    with open(template) as f:
        text = f.read()
    for pair in pairs:
        key, _, value = pair.partition("=")
        # Strings are substituted inside JSON string literals: escape them as JSON would.
        text = text.replace(f"@{key}@", json.dumps(value)[1:-1])
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        sys.exit(f"{template}: placeholders left unfilled: {sorted(set(left))}")
    json.loads(text)  # fail here, not inside MLServer, if the result is not JSON
    with open(out, "w") as f:
        f.write(text)


def adaptive(config_path: str, p99_ms: str) -> None:
    """Rewrites the [batching] table: policy adaptive, p99_target_ms, nothing else."""
    with open(config_path) as f:
        text = f.read()
    tomllib.loads(text)
    table = f'[batching]\npolicy = "adaptive"\np99_target_ms = {float(p99_ms)}\n'
    # Drop an existing [batching] table (up to the next table header or the end).
    text = re.sub(r"(?ms)^\[batching\]\n.*?(?=^\[|\Z)", "", text)
    text = text.rstrip("\n") + "\n\n" + table
    parsed = tomllib.loads(text)
    assert parsed["batching"]["policy"] == "adaptive", parsed
    with open(config_path, "w") as f:
        f.write(text)


def io(config_path: str) -> None:
    """The model's one input and one output as render arguments."""
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
    if config.get("family") != "mlp" or len(config["inputs"]) != 1 or len(config["outputs"]) != 1:
        sys.exit(f"{config_path}: expected an MLP with one input and one output")
    i, o = config["inputs"][0], config["outputs"][0]
    print(f"INPUT_NAME={i['name']} INPUT_WIDTH={int(i['dims'][-1])} "
          f"OUTPUT_NAME={o['name']} OUTPUT_WIDTH={int(o['dims'][-1])}")


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.2)
    sys.exit(f"{url} not ready after {timeout_s} s ({last})")


def infer(base: str, model: str, name: str, rows: int, width: int, data: list[float]) -> dict:
    body = json.dumps(
        {"inputs": [{"name": name, "datatype": "FP32", "shape": [rows, width], "data": data}]}
    ).encode()
    req = urllib.request.Request(
        f"{base.rstrip('/')}/v2/models/{model}/infer",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"{base}: HTTP {e.code}: {e.read().decode(errors='replace')}")


def check(a_url: str, b_url: str, model: str, config_path: str, tol: float = 1e-4) -> None:
    """Sends identical inputs (1, 3 and 8 rows) to both servers; outputs must agree within tol."""
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
    inp = config["inputs"][0]
    name, width = inp["name"], int(inp["dims"][-1])
    rng = random.Random(1234)
    worst = 0.0
    count = 0
    for rows in (1, 3, 8):
        data = [rng.uniform(-1.0, 1.0) for _ in range(rows * width)]
        a = infer(a_url, model, name, rows, width, data)
        b = infer(b_url, model, name, rows, width, data)
        oa, ob = a["outputs"][0], b["outputs"][0]
        if list(oa["shape"]) != list(ob["shape"]):
            sys.exit(f"shapes differ at {rows} rows: {oa['shape']} vs {ob['shape']}")
        for x, y in zip(oa["data"], ob["data"], strict=True):
            diff = abs(x - y) / max(1.0, abs(x))
            worst = max(worst, diff)
            count += 1
    print(f"outputs agree: {count} values over 1, 3 and 8 rows, largest difference {worst:.2e} "
          f"(abs, relative above 1; tolerance {tol:g})")
    if worst > tol:
        sys.exit("outputs differ beyond tolerance: the servers do not compute the same model")


def summary(cohost_json: str, mlserver_json: str) -> None:
    def peak(path: str) -> tuple[float, float, float]:
        with open(path) as f:
            j = json.load(f)
        best = j["search"]["best"]
        if best is None:
            return 0.0, 0.0, float("nan")
        o = best["overall"]
        return j["search"]["max_rate"], o["throughput"], o["p99_ms"]

    c_rate, c_tp, c_p99 = peak(cohost_json)
    m_rate, m_tp, m_p99 = peak(mlserver_json)
    print(f"cohost   max throughput: {c_tp:10.1f} req/s (offered {c_rate:.1f}, p99 {c_p99:.3f} ms)")
    print(f"MLServer max throughput: {m_tp:10.1f} req/s (offered {m_rate:.1f}, p99 {m_p99:.3f} ms)")
    if m_tp > 0:
        print(f"ratio cohost / MLServer: {c_tp / m_tp:.1f}x")
    else:
        print("ratio cohost / MLServer: undefined (MLServer met the target at no rate tried)")


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "port":
        print(free_port())
    elif cmd == "render":
        render(args[0], args[1], args[2:])
    elif cmd == "adaptive":
        adaptive(args[0], args[1])
    elif cmd == "io":
        io(args[0])
    elif cmd == "ready":
        wait_ready(args[0], float(args[1]) if len(args) > 1 else 60.0)
    elif cmd == "check":
        check(args[0], args[1], args[2], args[3])
    elif cmd == "summary":
        summary(args[0], args[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
