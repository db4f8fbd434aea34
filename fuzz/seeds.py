#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/TARGET/seed-*) from the inputs the
tests use. `MODELS` is a folder made by `cohost gen` holding mlp-tiny and dlrm-tiny (their
config.toml and model.safetensors seed the config and safetensors targets). Run once, then
minimize with `cargo +nightly fuzz cmin` (docs/RELIABILITY.md, "Fuzzing").

Usage: fuzz/seeds.py MODELS
"""

import json
import os
import struct
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- http_json: bodies of protocol/src/codec/tests.rs and the HTTP tests.
bodies = [
    '{"inputs":[{"name":"a","shape":[2,2],"datatype":"FP16","data":[[1,2],[3,0.5]]},'
    '{"name":"b","shape":[3],"datatype":"INT8","data":[-1,0,127]}],"parameters":{"timeout":1500}}',
    '{"inputs":[{"name":"b","shape":[1],"datatype":"INT8","data":[300]}]}',
    '{"inputs":[{"name":"c","shape":[-1],"datatype":"FP32","data":[]}]}',
    '{"inputs":[{"name":"d","shape":[1],"datatype":"FP32","data":null}]}',
    '{"inputs":[],"parameters":{"timeout":"soon"}}',
    '{"id":"r-1","inputs":[{"name":"dense","shape":[2,4],"datatype":"FP32",'
    '"data":[0.5,-1,2,3,4,5,6,7]},{"name":"sparse","shape":[2,3],"datatype":"INT64",'
    '"data":[1,2,3,4,5,6]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}],'
    '"parameters":{"binary_data_output":false,"timeout":0}}',
    '{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["ab","\\u00e9"]},'
    '{"name":"t","shape":[1,1],"datatype":"BOOL","data":[[true]]},'
    '{"name":"u","shape":[2],"datatype":"UINT64","data":[0,18446744073709551615]},'
    '{"name":"v","shape":[1],"datatype":"BF16","data":[1e3]},'
    '{"name":"w","shape":[1],"datatype":"FP64","data":[5e-324]}]}',
]
for i, b in enumerate(bodies):
    put("http_json", f"{i}", b)

# --- json_data_diff: the `data` values of json_data_converts_as_the_value_tree_did.
datas = [
    "[1, 2, 3]", "[[1, 2], [3, 4]]", "[[[0.5]], [[-1.25]]]", "7", "-3", "2.5",
    "[true, false]", "[1, true]", "[-129, 128, 255, 256, 65536]",
    "[-9223372036854775808, 9223372036854775807, 18446744073709551615]",
    "[18446744073709551616, 1e300, -1e-300, 0.1]", "[1.0, 2.0]", '["ab", "c"]',
    '["x", 1]', "[null, 1]", '[{"a": [1, 2]}, 3]', "[[], [1], []]", "[]", '{"k": 1}',
]
for i, d in enumerate(datas):
    put("json_data_diff", f"{i}", d)

# --- http_binary: u16 LE header length, then the body (binary_inputs_must_account_...).
def binary(head, tail):
    h = json.dumps(head, separators=(",", ":")).encode()
    return struct.pack("<H", len(h)) + h + tail

put("http_binary", "int32", binary(
    {"inputs": [{"name": "x", "shape": [2], "datatype": "INT32",
                 "parameters": {"binary_data_size": 8}}]},
    struct.pack("<ii", 1, 2)))
put("http_binary", "extra", binary(
    {"inputs": [{"name": "x", "shape": [2], "datatype": "INT32",
                 "parameters": {"binary_data_size": 8}}]},
    struct.pack("<ii", 1, 2) + b"\x09"))
strings = b"".join(struct.pack("<I", len(s)) + s for s in [b"ab", b"", b"\xff\x00"])
put("http_binary", "bytes", binary(
    {"inputs": [{"name": "s", "shape": [3], "datatype": "BYTES",
                 "parameters": {"binary_data_size": len(strings)}},
                {"name": "f", "shape": [1, 2], "datatype": "FP16",
                 "parameters": {"binary_data_size": 4}}],
     "outputs": [{"name": "y", "parameters": {"binary_data": True}}]},
    strings + b"\x00\x3c\x00\xc0"))
put("http_binary", "mixed", binary(
    {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1.5]},
                {"name": "b", "shape": [2], "datatype": "UINT16",
                 "parameters": {"binary_data_size": "4"}}]},
    struct.pack("<HH", 7, 65535)))
put("http_binary", "badlength", b"\xff\xff12x{}")


# --- grpc_infer: ModelInferRequest messages, hand-encoded protobuf.
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def s(num, text):
    return field(num, 2, text if isinstance(text, bytes) else text.encode())


def packed(num, values, fmt=None):
    if fmt:
        body = b"".join(struct.pack(fmt, v) for v in values)
    else:
        body = b"".join(varint(v & 0xFFFFFFFFFFFFFFFF) for v in values)
    return field(num, 2, body)


def param(key, choice_num, value, wire=0):
    # InferParameter: bool_param 1, int64_param 2, string_param 3, double 4, uint64 5.
    p = field(choice_num, wire, value)
    return field(4, 2, s(1, key) + field(2, 2, p))


def tensor(name, dt, shape, contents=b""):
    t = s(1, name) + s(2, dt) + packed(3, shape)
    if contents:
        t += field(5, 2, contents)
    return field(5, 2, t)


# InferTensorContents: bool 1, int 2, int64 3, uint 4, uint64 5, fp32 6, fp64 7, bytes 8.
put("grpc_infer", "typed", s(1, "mlp-tiny") + s(2, "1") + s(3, "req")
    + tensor("x", "FP32", [1, 2], packed(6, [1.0, 2.5], "<f"))
    + tensor("i", "INT8", [3], packed(2, [-1, 0, 127]))
    + tensor("b", "BYTES", [2], s(8, b"ab") + s(8, b""))
    + param("timeout", 2, 1500))
put("grpc_infer", "raw", s(1, "m") + tensor("x", "FP32", [1, 2])
    + tensor("h", "FP16", [1]) + s(7, struct.pack("<ff", 1.0, 2.5)) + s(7, b"\x00\x3c")
    + param("binary_data_output", 1, 1))
put("grpc_infer", "wrong", s(1, "m") + tensor("x", "INT64", [1, 1], packed(6, [1.0], "<f"))
    + tensor("y", "FP32", [-1]) + field(6, 2, s(1, "out")))
put("grpc_infer", "uint", s(1, "m") + tensor("u", "UINT16", [2], packed(4, [65535, 70000]))
    + tensor("v", "UINT64", [1], packed(5, [2**64 - 1])) + param("timeout", 5, 7))

# --- grpc_timeout: the unit test's values.
for i, t in enumerate(["100m", "5S", "7u", "x", "", "99999999H", "0m", "10000000000000000000S",
                       "123456789m", "S", "+5S", "-5S", "5s", "5", " 5S", "5 S", "1n", "12M"]):
    put("grpc_timeout", f"{i}", t)

# --- model_config and safetensors_load: the generated tiny models.
if len(sys.argv) > 1:
    models = sys.argv[1]
    for i, name in enumerate(["mlp-tiny", "dlrm-tiny"]):
        with open(os.path.join(models, name, "config.toml"), "rb") as f:
            put("model_config", name, f.read())
        with open(os.path.join(models, name, "1", "model.safetensors"), "rb") as f:
            w = f.read()
        mode = 0 if name == "mlp-tiny" else 1
        for extra, what in [(0, ""), (4, "-file"), (8, "-offload"), (12, "-file-offload")]:
            put("safetensors_load", name + what, bytes([mode | extra]) + w)
        put("safetensors_load", name + "-truncated", bytes([mode]) + w[: len(w) // 2])
        if name == "dlrm-tiny":
            put("safetensors_load", "dcn", bytes([2]) + w)
        else:
            put("safetensors_load", "fp16", bytes([3]) + w)
    put("model_config", "dcn", open(os.path.join(models, "dlrm-tiny", "config.toml")).read()
        .replace("[dlrm]", '[dlrm]\ninteraction = "dcn"\ndcn_layers = 2\ndcn_low_rank = 3'))
