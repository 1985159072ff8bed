"""Seconds per ALS and Gibbs sweep on a Dask cluster whose network is throttled to a
stated rate, against the capacity model's prediction from the bytes each sweep moves.

    sudo python benchmarks/dask_network.py [--ratings 5000000] [--users 500000]
        [--items 5000] [--factors 32] [--rates none 1gbit 500mbit] [--sweeps 3]
        [--transfers relay direct] [--out benchmarks/results/dask_network.json]

There is one machine here, so the "network" is the loopback interface that the client,
the scheduler and two LocalCluster workers talk over. Linux's token-bucket filter (``tc
qdisc add dev lo root tbf rate RATE ...``, needs root) holds everything that crosses it to
RATE, for the timed sweeps only (it is removed after each rate, and on any exit: if the
process is killed with SIGKILL, remove it with ``tc qdisc del dev lo root``). All flows
then share one link of RATE: the pessimistic case of a cluster behind one switch port,
where the capacity model (benchmarks/README.md) gives each machine a link of its own.

The data are shaped so that the item half-step's broadcast of the user factors (the
first thing the capacity model expects to become communication-bound) is large: many
users with few ratings each, d = 32 (the capacity model's 10^9-rating case has 100
ratings per user; here 10, so that the users' design is large against the ratings on
one machine's memory and cores).

For each rate: ALS (exact, lambda 10, biases; one warm-up sweep places the rating
blocks, then ``--sweeps`` timed sweeps, median) and the Gibbs sampler (the hierarchical
Gaussian model, one chain from a random start, 2 x ``--sweeps`` sweeps as the sampler
counts them), each with the bytes the operating system counted on the loopback interface
per sweep. The prediction for a rate: the unthrottled seconds per sweep plus the
loopback bytes per sweep at that rate, i.e. no overlap of computing and sending.

``--transfers``: how the executor's scatters (the rating blocks, the large designs) and
gathers (the rows coming back) travel, both measured in the same run on the same
cluster: ``relay`` (through the scheduler, Dask's default for a client outside the
cluster, and the executor's) or ``direct`` (``DaskExecutor(client, direct=True)``, or
Dask's own switch ``direct_to_workers``: the rating blocks, the inputs scattered ahead
and the results above 8 MB straight between the client and each worker; smaller
results through the scheduler, whose one round trip is quicker). The arrays that ride
inside the tasks go through the scheduler either way.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dask_scaling import _als_sweeps, _gibbs_seconds_per_sweep  # noqa: E402

UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def bits_per_second(rate: str) -> float | None:
    """'1gbit' -> 1e9; 'none' -> None (not throttled)."""
    if rate == "none":
        return None
    for unit, scale in UNITS.items():
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * scale
    raise SystemExit(f"--rates: expected values such as none, 500mbit, 1gbit; got {rate!r}")


def _tc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["tc", "qdisc", *args], capture_output=True, text=True,
                          check=check)


def unthrottle() -> None:
    _tc("del", "dev", "lo", "root", check=False)


def throttle(rate: str) -> None:
    """Hold the loopback interface to ``rate``: a token bucket of 1 MB (above the
    loopback's 64 kB packets, which a smaller bucket would drop) and a queue of up to
    2 s, so that the filter delays packets rather than drop them."""
    unthrottle()
    done = _tc("add", "dev", "lo", "root", "tbf", "rate", rate, "burst", "1mb",
               "latency", "2000ms", check=False)
    if done.returncode:
        raise SystemExit(f"could not throttle the loopback interface to {rate} "
                         f"(tc says: {done.stderr.strip()}); run as root on Linux")


def measure(data, d: int, sweeps: int, rate: str, executor, transfers: str) -> dict:
    """ALS and Gibbs seconds and loopback bytes per sweep at ``rate``; the rating blocks
    are placed (the ALS warm-up sweep) before the filter is applied."""
    import bayes_pmf as bp
    from bayes_pmf.engines.ridge import initial_params, sweep

    executor.direct = transfers == "direct"  # DaskExecutor(client, direct=...)
    spec = bp.PMFSpec.from_lambdas(d, 10.0, biases=True)
    sweep(data, initial_params(data, spec, rng=0), spec, executor=executor)  # placement
    if rate != "none":
        throttle(rate)
    try:
        als, sent, _, als_loopback = _als_sweeps(data, d, sweeps, executor)
        gibbs, _, gibbs_loopback = _gibbs_seconds_per_sweep(data, d, sweeps, executor)
    finally:
        unthrottle()
    return {"rate": rate, "transfers": transfers, "als_seconds_per_sweep": als,
            "gibbs_seconds_per_sweep": gibbs,
            "executor_bytes_sent_per_als_sweep": sent,
            "loopback_bytes_per_als_sweep": als_loopback,
            "loopback_bytes_per_gibbs_sweep": gibbs_loopback}


def predicted(rows: list[dict]) -> None:
    """Each throttled row's prediction: the unthrottled seconds plus its loopback bytes
    sent at its rate (bytes x 8 / bits per second)."""
    for r in rows:
        base = next((b for b in rows if b["rate"] == "none"
                     and b["transfers"] == r["transfers"]), None)
        bps = bits_per_second(r["rate"])
        if base is None or bps is None:
            continue
        for kind in ("als", "gibbs"):
            r[f"predicted_{kind}_seconds_per_sweep"] = (
                base[f"{kind}_seconds_per_sweep"]
                + 8.0 * r[f"loopback_bytes_per_{kind}_sweep"] / bps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--rates", nargs="+", default=["none", "1gbit", "500mbit"])
    parser.add_argument("--transfers", nargs="+", choices=["relay", "direct"],
                        default=["relay", "direct"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                             "dask_network.json"))
    args = parser.parse_args()
    for rate in args.rates:
        bits_per_second(rate)  # every rate checked before any work
    if any(r != "none" for r in args.rates) and shutil.which("tc") is None:
        raise SystemExit("tc (iproute2) is needed to throttle the loopback interface")
    atexit.register(unthrottle)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    import bayes_pmf as bp
    from bayes_pmf.engines.dask_executor import DaskExecutor

    began = time.perf_counter()
    spec = bp.PMFSpec(n_factors=10, sigma=0.8, sigma_u=0.5, sigma_v=0.5, biases=True)
    data = bp.make_synthetic(args.users, args.items, args.ratings, spec, rng=0).data
    data.by_user, data.by_item  # built once, outside the timings
    design_mb = data.n_users * (args.factors + 1) * 8 / 1e6
    print(f"{data.n_ratings:,} ratings ({data.n_users:,} users, {data.n_items:,} items) "
          f"made in {time.perf_counter() - began:.0f} s; the users' design at "
          f"d = {args.factors}: {design_mb:.0f} MB", flush=True)
    rows = []
    with DaskExecutor.local(2, threads_per_worker=1) as executor:
        for k, rate in enumerate(args.rates):
            # the order of the two ways alternates from rate to rate
            for transfers in (args.transfers if k % 2 == 0 else args.transfers[::-1]):
                row = {"n_ratings": data.n_ratings, "n_users": data.n_users,
                       "n_items": data.n_items, "n_factors": args.factors,
                       **measure(data, args.factors, args.sweeps, rate, executor,
                                 transfers)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    predicted(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print()
    rows.sort(key=lambda r: (args.rates.index(r["rate"]), r["transfers"]))
    print(f"{'rate':>8} {'transfers':>9} {'MB/ALS sweep':>13} {'ALS s':>7} {'predicted':>9} "
          f"{'MB/Gibbs sweep':>15} {'Gibbs s':>8} {'predicted':>9}")
    for r in rows:
        print(f"{r['rate']:>8} {r['transfers']:>9} "
              f"{r['loopback_bytes_per_als_sweep'] / 1e6:>13.0f} "
              f"{r['als_seconds_per_sweep']:>7.2f} "
              f"{r.get('predicted_als_seconds_per_sweep', float('nan')):>9.2f} "
              f"{r['loopback_bytes_per_gibbs_sweep'] / 1e6:>15.0f} "
              f"{r['gibbs_seconds_per_sweep']:>8.2f} "
              f"{r.get('predicted_gibbs_seconds_per_sweep', float('nan')):>9.2f}")


if __name__ == "__main__":
    main()
