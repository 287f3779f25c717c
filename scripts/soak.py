#!/usr/bin/env python3
"""Soak test: ackbar under steady ingest for a long time, watching memory
and the store.

Runs the release binary with a short retention against a second ackbar in
sandbox mode playing Slack (so the emulator's growing message history is not
counted in the measured process), sends
Alertmanager webhooks at a steady rate with a rotating set of alerts (every
generation of groups fires, is re-sent, then resolves and is replaced by the
next), and samples the process's RSS and the store's table sizes. It fails
when RSS keeps growing after warm-up or the tables are not bounded by the
retention setting.

    cargo build --release
    python3 scripts/soak.py                      # 10 minutes
    python3 scripts/soak.py --duration 120       # a quick look

Standard library only; everything runs on 127.0.0.1 and stops at the end.
"""

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

GROUPS_PER_GENERATION = 10
ALERTS_PER_GROUP = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webhook(generation, group, status):
    name = f"g{generation}-{group}"
    alerts = [
        {
            "status": status,
            "labels": {"alertname": "SoakTest", "group": name, "instance": f"h{i}"},
            "annotations": {"summary": f"soak alert {i} of {name}"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T01:00:00Z",
            "generatorURL": "http://prometheus.test/graph",
            "fingerprint": "",
        }
        for i in range(ALERTS_PER_GROUP)
    ]
    return {
        "version": "4",
        "groupKey": "{}:{group=\"%s\"}" % name,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "soak",
        "groupLabels": {"group": name},
        "commonLabels": {"alertname": "SoakTest", "group": name},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test",
        "alerts": alerts,
    }


def post(port, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/alertmanager",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}")


def spawn_ackbar(binary, workdir, name, config):
    path = os.path.join(workdir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return subprocess.Popen(
        [binary, "serve", "--config", path],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(workdir, f"{name}.log"), "w"),
    )


def wait_ready(port):
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing ready on port {port}")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def table_sizes(db):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("cards", "alerts", "outbox")
        }
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=600, help="seconds of load (default 600)")
    parser.add_argument("--rate", type=float, default=20.0, help="webhooks per second (default 20)")
    parser.add_argument("--generation", type=int, default=20, help="seconds a generation of groups fires (default 20)")
    parser.add_argument("--retention", default="2m", help="store.retention (default 2m)")
    parser.add_argument("--binary", default="target/release/ackbar")
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")

    workdir = tempfile.mkdtemp(prefix="ackbar-soak-")
    db = os.path.join(workdir, "soak.db")
    port, slack_port = free_port(), free_port()
    slack = spawn_ackbar(args.binary, workdir, "slack", {
        "listen": f"127.0.0.1:{slack_port}",
        "store": {"url": "sqlite::memory:"},
        "log": {"level": "warn"},
    })
    server = spawn_ackbar(args.binary, workdir, "ackbar", {
        "listen": f"127.0.0.1:{port}",
        "store": {"url": f"sqlite://{db}", "retention": args.retention},
        "slack": {"api_url": f"http://127.0.0.1:{slack_port}/sandbox/api", "bot_token": "xoxb-sandbox"},
        "routes": [{"name": "soak", "channel": "C0ALERTS01", "reopen_window": "1m", "group_by": ["group"]}],
        "log": {"level": "warn"},
    })
    samples = []
    try:
        wait_ready(slack_port)
        wait_ready(port)
        start = time.monotonic()
        next_sample = start
        sent = 0
        previous_generation = None
        print(f"{'t (s)':>6} {'RSS MiB':>8} {'cards':>6} {'alerts':>7} {'outbox':>7} {'webhooks':>9}")
        while (now := time.monotonic()) - start < args.duration:
            elapsed = now - start
            generation = int(elapsed // args.generation)
            if previous_generation is not None and generation != previous_generation:
                for group in range(GROUPS_PER_GENERATION):
                    post(port, webhook(previous_generation, group, "resolved"))
                    sent += 1
            previous_generation = generation
            post(port, webhook(generation, sent % GROUPS_PER_GENERATION, "firing"))
            sent += 1
            if now >= next_sample:
                sizes = table_sizes(db)
                rss = rss_mib(server.pid)
                samples.append((elapsed, rss, sizes))
                print(f"{elapsed:6.0f} {rss:8.1f} {sizes['cards']:6} {sizes['alerts']:7} {sizes['outbox']:7} {sent:9}", flush=True)
                next_sample += 10
            time.sleep(max(0.0, start + sent / args.rate - time.monotonic()))
    finally:
        for process in (server, slack):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    # Verdict. Warm-up lasts until the tables reach their steady size (the
    # firing generation plus the resolved ones the retention keeps, pruned up
    # to a minute late: three retention periods is ample), at least a fifth
    # and at most half of the run. After it, RSS must not keep growing: the
    # peak of the second half of what is left may exceed the peak of the
    # first half by at most 3%, and the tables must stay within what the
    # retention allows.
    retention_s = int(args.retention[:-1]) * {"s": 1, "m": 60, "h": 3600}[args.retention[-1]]
    warm_up = min(max(args.duration / 5, 3 * (retention_s + 60)), args.duration / 2)
    warm = [s for s in samples if s[0] >= warm_up]
    if len(warm) < 6:
        sys.exit("run too short to judge")
    middle = warm[len(warm) // 2][0]
    early_peak = max(s[1] for s in warm if s[0] < middle)
    late_peak = max(s[1] for s in warm if s[0] >= middle)
    peak_cards = max(s[2]["cards"] for s in warm)
    growth = (late_peak - early_peak) / early_peak
    print(f"warm-up {warm_up:.0f} s; RSS {samples[0][1]:.1f} MiB at the start, "
          f"peak {early_peak:.1f} MiB from {warm[0][0]:.0f} s, peak {late_peak:.1f} MiB from "
          f"{middle:.0f} s ({growth:+.1%}), {warm[-1][1]:.1f} MiB at the end; "
          f"peak cards after warm-up {peak_cards}; webhooks sent {sent}")
    failed = False
    if growth > 0.03:
        print("FAIL: RSS kept growing after warm-up")
        failed = True
    # Live cards: the firing generation, the resolved ones inside the
    # retention, up to a minute of pruning lag, and one generation of slack
    # for where a sample falls.
    bound = GROUPS_PER_GENERATION * ((retention_s + 60) // args.generation + 3)
    if peak_cards > bound:
        print(f"FAIL: {peak_cards} cards exceed the retention bound {bound}")
        failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
