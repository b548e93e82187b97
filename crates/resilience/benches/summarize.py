#!/usr/bin/env python3
"""Print the Markdown table of BENCHMARKS.md from criterion's results of one run.

Usage: python3 crates/resilience/benches/summarize.py [CRITERION_DIR]

CRITERION_DIR defaults to target/criterion. Each scenario's median is read from
<group>/<function>/new/estimates.json, which criterion overwrites on every run, so run the whole
of `cargo bench -p resilience` first and this script right after it.
"""

import json
import sys
from pathlib import Path

OURS = "resilience"

# (criterion group, the function that measures us, the functions that measure the peers)
SCENARIOS = [
    ("breaker_closed", OURS, ["tower-resilience", "failsafe", "recloser"]),
    ("breaker_open", OURS, ["tower-resilience", "failsafe", "recloser"]),
    ("bulkhead_uncontended", OURS, ["tower-resilience", "tower_concurrency_limit"]),
    ("retry_first_success", OURS, ["tower-resilience"]),
    ("manager", "execute", ["tower-resilience_stack"]),
    ("manager", "execute_with_fallback_no_key", []),
    ("manager", "execute_with_fallback_cache_key", []),
    ("fallback_cache_hit", "after_primary_failed", []),
    ("fallback_cache_hit", "after_circuit_open", []),
    ("breaker_closed_2_threads", OURS, ["tower-resilience", "failsafe", "recloser"]),
    ("bulkhead_2_threads", OURS, ["tower-resilience", "tower_concurrency_limit"]),
]

# Peers called as tower services are compared with a bare tower service, the others with a bare
# async fn. The 2-thread scenarios have no bare baseline, so they show no overhead.
TOWER_PEERS = {"tower-resilience", "tower_concurrency_limit", "tower-resilience_stack"}


def median_ns(root, group, function):
    path = root / group / function / "new" / "estimates.json"
    if not path.exists():
        return None
    with path.open() as file:
        return json.load(file)["median"]["point_estimate"]


def format_ns(value):
    if value is None:
        return "not run"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    bare = median_ns(root, "bare", "async_fn")
    bare_tower = median_ns(root, "bare", "tower_service_fn")

    print("| Scenario | Implementation | Median (ns) | Overhead over the bare call (ns) | Peer / ours |")
    print("|---|---|---:|---:|---:|")
    print(f"| bare call | `async fn` | {format_ns(bare)} | 0 | |")
    print(f"| bare call | tower `service_fn` | {format_ns(bare_tower)} | 0 | |")
    for group, ours_function, peers in SCENARIOS:
        ours = median_ns(root, group, ours_function)
        contended = group.endswith("_2_threads")
        for function in [ours_function, *peers]:
            median = median_ns(root, group, function)
            baseline = bare_tower if function in TOWER_PEERS else bare
            if contended or median is None or baseline is None:
                overhead = ""
            else:
                overhead = f"{median - baseline:.1f}"
            is_ours = function == ours_function
            ratio = "" if is_ours or ours is None or median is None else f"{median / ours:.1f}x"
            name = f"**{OURS}**" if is_ours else function
            if is_ours and ours_function != OURS:
                name = f"**{OURS}** `{ours_function}`"
            print(f"| {group} | {name} | {format_ns(median)} | {overhead} | {ratio} |")


if __name__ == "__main__":
    main()
