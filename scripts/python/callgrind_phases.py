#!/usr/bin/env python3
"""A cohost server's callgrind profile split by request phase: inclusive instructions per
request of the functions that make up each phase (decode, validate, queue + wake,
scheduler, lane, reply + wake, encode, metrics, load report), then the costliest cohost
functions by inclusive cost. Phases can nest (the lane's pass includes the reply), so
they do not add up to the total.

    scripts/python/callgrind_phases.py PROFILE REQUESTS [TOP]

PROFILE is a dump from `scripts/server-cost.sh callgrind` (target/server-cost/
callgrind-cohost-json.out ...), REQUESTS the requests it covers (printed beside it).
"""

import re
import subprocess
import sys

# Phase -> function-name patterns (regular expressions, searched in the demangled name).
PHASES = [
    ("decode", [r"cohost_protocol::codec::(request::)?decode_request\b", r"grpc::convert::decode_request\b",
                r"ProstDecoder.*as tonic::codec::Decoder>::decode"]),
    ("validate", [r"cohost_runtime::validate::prepare\b", r"as cohost_models::model::Model>::check\b"]),
    ("queue + wake", [r"ModelQueue::enqueue\b", r"Scheduler::notify_queue\b", r"Scheduler::notify\b"]),
    ("scheduler pass (lane thread)", [r"Scheduler::next(_for)?\b"]),
    ("caller claim (in place of the pass)", [r"Scheduler::claim\b"]),
    ("lane (gather, forward, split)", [r"cohost_runtime::lane::run\b", r"LanePool::run_as\b"]),
    ("  forward", [r"as cohost_models::model::Model>::forward\b"]),
    ("reply + wake", [r"oneshot::Sender<.*>>::send\b"]),
    ("encode", [r"cohost_protocol::codec::.*encode", r"grpc::convert::encode_response\b",
                r"ProstEncoder.*as tonic::codec::Encoder>::encode"]),
    ("metrics", [r"cohost_runtime::metrics::", r"cohost_server::metrics::", r"StatsRecorder::request\b",
                 r"^metrics::"]),
    ("load report", [r"Runtime::load_report\b", r"put_load\b"]),
]


def inclusive(profile):
    """(inclusive Ir, function name) of every function in the profile."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", profile],
        check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?(?:\S*:)?(.+?)(?:\s+\[.*\])?$", line)
        if m and "," in m.group(1) or (m and m.group(1).isdigit()):
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
    return rows


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    profile, requests = sys.argv[1], float(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    rows = inclusive(profile)
    total = max((ir for ir, name in rows if "PROGRAM TOTALS" in name), default=None)
    with open(profile) as f:
        totals = re.findall(r"^totals:\s+(\d+)", f.read(), re.M)
    total = int(totals[-1]) if totals else total or 0
    print(f"{profile}: {total / requests:,.0f} instructions per request in all")
    for phase, patterns in PHASES:
        # The outermost match of each pattern: the largest inclusive cost among its names
        # (a function that recurses or has several monomorphs counts once per name).
        cost = 0
        for p in patterns:
            matches = [ir for ir, name in rows if re.search(p, name)]
            cost += sum(matches)
        print(f"  {phase:<32} {cost / requests:10,.0f}")
    print(f"costliest cohost functions (inclusive instructions per request):")
    shown = 0
    for ir, name in sorted(rows, reverse=True):
        if re.search(r"cohost_(runtime|server|protocol|models|kernels)::", name):
            print(f"  {ir / requests:10,.0f}  {name[:150]}")
            shown += 1
            if shown >= top:
                break


if __name__ == "__main__":
    main()
