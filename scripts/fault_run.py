#!/usr/bin/env python3
"""Fault run of `em-agent serve`: kill -9 under signed load, restart, and check that every delivery answered
2xx is stored and counted exactly once.

Each cycle starts the server on the same data directory, posts signed GitHub `deployment_status` deliveries
(each a distinct production deployment with its own delivery id) from several connections, and kills the
server with SIGKILL at a random moment while requests are in flight. After the last cycle the server is
started once more and drained, and the run checks:

  * every delivery answered 202 is stored and processed;
  * a delivery whose request was cut off by the kill is stored or not, never half: the stored count is
    exactly the answered ones plus the cut-off ones the server kept;
  * the DORA API counts exactly one deployment per stored delivery, and no delivery is dead-lettered;
  * re-sending every answered delivery is answered 200 "duplicate" and changes no figure.

Not part of CI (it takes minutes); figures are in docs/reliability.md.

Usage: scripts/fault_run.py [--cycles 20] [--connections 8] [--bin target/release/em-agent] [--keep]
Needs: Python 3.9+ (standard library only); builds the release binary unless --bin is given.
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SECRET = "fault-run-secret"
REPO = "fault/run-service"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def body(i):
    seconds = i % (86400 * 5)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1735689600 + seconds))
    return json.dumps(
        {
            "action": "created",
            "deployment_status": {
                "id": 50_000_000 + i,
                "state": "success",
                "environment": "production",
                "created_at": created,
            },
            "deployment": {
                "id": 60_000_000 + i,
                "sha": format(i + 1, "040x"),
                "environment": "production",
                "production_environment": True,
            },
            "repository": {"full_name": REPO, "default_branch": "main"},
        },
        separators=(",", ":"),
    ).encode()


def headers(i, raw):
    sig = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": f"fault-{i}",
        "X-Hub-Signature-256": f"sha256={sig}",
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, data, port, log):
        self.port = port
        env = {k: v for k, v in os.environ.items() if not k.startswith("EM_AGENT_")}
        env["EM_AGENT_GITHUB_SECRET"] = SECRET
        config = data + ".toml"
        if not os.path.exists(config):
            open(config, "w").close()
        self.proc = subprocess.Popen(
            [binary, "serve", "--addr", f"127.0.0.1:{port}", "--data-dir", data, "--config", config],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"fault_run: the server exited with {self.proc.returncode} (log: {log.name})")
            try:
                if self.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - started > 60:
                sys.exit("fault_run: the server did not answer /healthz within 60 s")
            time.sleep(0.02)
        self.ready_after = time.monotonic() - started

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            c.close()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


def post(conn, i):
    raw = body(i)
    conn.request("POST", "/webhooks/github", body=raw, headers=headers(i, raw))
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"null")


def load(server, ids, answered, cut_off, errors, connections, stop):
    """Posts until the server dies: each id is answered (202), cut off (no answer), or never sent."""
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        while not stop.is_set():
            with lock:
                i = next(ids)
            try:
                status, answer = post(conn, i)
            except (OSError, http.client.HTTPException):
                with lock:
                    cut_off.append(i)
                return
            with lock:
                if status == 202:
                    answered.append(i)
                else:
                    errors.append(f"delivery fault-{i} answered {status} {answer}")
                    return

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    return threads


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--bin", default=None, help="em-agent binary (default: build the release one)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    binary = args.bin
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "em-agent"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        binary = os.path.join(target, "release", "em-agent")

    work = tempfile.mkdtemp(prefix="em-agent-fault-")
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "server.log"), "ab")
    answered, cut_off, restarts, failures = [], [], [], []
    counter = iter(range(10**9))
    started = time.monotonic()
    print(f"fault_run: {args.cycles} cycles, {args.connections} connections, data in {work}")
    for cycle in range(1, args.cycles + 1):
        server = Server(binary, data, free_port(), log)
        restarts.append(server.ready_after)
        before = len(answered)
        stop = threading.Event()
        threads = load(server, counter, answered, cut_off, failures, args.connections, stop)
        # Kill at a random moment once requests are flowing, so some are in flight.
        time.sleep(rng.uniform(0.3, 2.0))
        server.kill()
        stop.set()
        for t in threads:
            t.join()
        print(
            f"  cycle {cycle:2}: ready in {server.ready_after * 1000:.0f} ms, "
            f"{len(answered) - before} answered, kill -9"
        )

    server = Server(binary, data, free_port(), log)
    deadline = time.monotonic() + 300
    while True:
        _, stats = server.get("/v1/stats")
        if stats["queued"] == 0:
            break
        if time.monotonic() > deadline:
            sys.exit(f"fault_run: the queue did not drain: {stats}")
        time.sleep(0.1)

    for i in answered:
        status, d = server.get(f"/v1/deliveries/github/fault-{i}")
        if status != 200 or d.get("state") != "processed":
            failures.append(f"answered delivery fault-{i}: {status} {d}")
    kept = [i for i in cut_off if server.get(f"/v1/deliveries/github/fault-{i}")[0] == 200]
    stored = stats["deliveries"]
    if stored != len(answered) + len(kept):
        failures.append(f"{stored} stored, but {len(answered)} answered + {len(kept)} cut off and kept")
    if stats["dead_letters"] != 0:
        failures.append(f"{stats['dead_letters']} dead letters")

    def deployments():
        q = f"/v1/metrics/dora?service={REPO}&from=2025-01-01&to=2025-01-10"
        status, v = server.get(q)
        if status != 200:
            sys.exit(f"fault_run: {q}: {status} {v}")
        return v["deployment_frequency"]["deployments"]

    counted = deployments()
    if counted != stored:
        failures.append(f"{counted} deployments counted for {stored} stored deliveries")

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for i in answered:
        status, answer = post(conn, i)
        if (status, answer.get("status")) != (200, "duplicate"):
            failures.append(f"re-sent fault-{i}: {status} {answer}")
            break
    deadline = time.monotonic() + 60
    while server.get("/v1/stats")[1]["queued"] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    if deployments() != counted:
        failures.append("re-sending the answered deliveries changed the count")
    server.stop()
    log.close()

    print(
        f"fault_run: {args.cycles} kill -9 cycles in {time.monotonic() - started:.0f} s: "
        f"{len(answered)} deliveries answered 202; {len(cut_off)} cut off by a kill, {len(kept)} of them "
        f"kept; {stored} stored, {counted} deployments counted, {stats['dead_letters']} dead letters; "
        f"{len(answered)} re-sent; restart to ready: median {statistics.median(restarts) * 1000:.0f} ms, "
        f"max {max(restarts) * 1000:.0f} ms"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("fault_run: FAILED", *failures[:20], sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print("fault_run: ok: every answered delivery stored, processed and counted exactly once")


if __name__ == "__main__":
    main()
