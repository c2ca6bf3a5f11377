"""Delivery latency and throughput: Dispatcher.submit -> notification received by PagerDuty's stand-in.

    python -m bench.delivery [--seconds 10] [--rates 250,500,1000,2000,4000]

Starts Redis, a PagerDuty Events API stand-in in its own process (records each event's
arrival time), and one Dispatcher (group_wait 0: the issue excludes group_wait). At each
rate, for `--seconds`, it submits critical alerts each of a new model (so every submit is a
new group and one PagerDuty event, nothing batched), paced evenly, in the same event loop
as the Dispatcher's run loop, as the alerts service runs it. Latency = arrival at the
receiver - the submit call. A rate is sustained when every event arrived within 5 s of the
last submit and p99 < 1 s; the highest sustained rate is the highest rate the submits
actually achieved at a sustained step (they share the event loop with the dispatcher, as in
the service, so past some rate they fall behind and the steps stop). Results go to bench/results/delivery.json.

This is the delivery half of the issue's "finding published -> notification received"
(the lifecycle half, consumer and Redis state, is measured by the alerts service's bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np

from bench import paced, scratch

TARGET_RATE, TARGET_P99 = 500, 1.0
RESULTS = Path(__file__).parent / "results" / "delivery.json"


def serve(port: int) -> None:
    """The receiver process: 202 to every POST, arrival times on GET: by dedup_key for a
    PagerDuty event, by the finding_id of each alert's latest finding for a webhook
    notification (and, under "applied", each alert's received_at: when the service applied it)."""
    arrivals: dict[str, float] = {}
    applied: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            t = time.time()
            if "dedup_key" in body:
                arrivals.setdefault(body["dedup_key"], t)
            for a in body.get("alerts") or []:
                fid = a["latest"]["finding_id"]
                if fid not in arrivals:
                    arrivals[fid], applied[fid] = t, a["received_at"]
            out = json.dumps({"status": "success", "dedup_key": body.get("dedup_key")}).encode()
            self.send_response(202)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_GET(self):  # noqa: N802
            out = json.dumps({"arrivals": arrivals, "applied": applied} if self.path == "/all" else arrivals).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # the default 5 resets connections under load
        daemon_threads = True

    server = Server(("127.0.0.1", port), Handler)
    server.serve_forever()


def alert(model_id: str) -> dict:
    fp = f"{model_id}:data_drift:f0"
    return {"alert_id": fp, "fingerprint": fp, "severity": "critical", "status": "firing", "title": "drift",
            "summary": "PSI 0.41", "model_id": model_id, "kind": "data_drift",
            "first_seen": "2026-01-01T00:00:00+00:00", "last_seen": "2026-01-01T00:00:00+00:00",
            "occurrences": 1, "revision": 1, "latest": {"metrics": {"psi": 0.41}, "feature": "f0"}}


async def one_rate(d, receiver: str, rate: int, seconds: float) -> dict:
    n = int(rate * seconds)
    tag = uuid.uuid4().hex[:6]
    submitted: dict[str, float] = {}
    t0 = time.time()
    async for due in paced(n, rate):
        for i in due:
            m = f"b{tag}-{i}"
            submitted[f"{m}:data_drift:f0"] = time.time()
            await d.submit(alert(m), {"owners": ["bench"], "labels": {}, "risk_tier": "low"})
    submit_span = time.time() - t0
    deadline = time.time() + 5.0
    async with httpx.AsyncClient() as client:
        while True:
            arrivals = (await client.get(receiver)).json()
            got = {k: v for k, v in arrivals.items() if k in submitted}
            if len(got) == n or time.time() > deadline:
                break
            await asyncio.sleep(0.2)
    lat = np.array([got[k] - submitted[k] for k in got]) if got else np.array([np.inf])
    return {"rate": rate, "submitted": n, "delivered": len(got), "achieved_submit_rate": round(n / submit_span, 1),
            "p50_s": round(float(np.percentile(lat, 50)), 4), "p99_s": round(float(np.percentile(lat, 99)), 4),
            "max_s": round(float(lat.max()), 4),
            "sustained": len(got) == n and float(np.percentile(lat, 99)) < TARGET_P99,
            "kept_pace": n / submit_span >= 0.95 * rate}


async def run(args) -> dict:
    from services.alerts.dispatch import Dispatcher
    from services.alerts.routing import Routing
    from shared.redis import connect
    from shared.runtime import free_port, start_redis
    from shared.settings import Settings

    workdir = scratch("vigil-bench-delivery-")
    redis_proc = start_redis(workdir)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.delivery", "--serve", str(port)])
    results = []
    try:
        url = f"http://127.0.0.1:{port}/v2/enqueue"
        async with httpx.AsyncClient() as c:
            for _ in range(100):
                try:
                    await c.get(url)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        settings = Settings(redis_url=redis_proc.address, pagerduty_routing_key="bench", pagerduty_url=url,
                            group_wait_seconds=0, group_interval_seconds=300)
        redis = connect(redis_proc.address)
        d = Dispatcher(redis, settings, Routing.load(settings))
        task = asyncio.create_task(d.run())
        for rate in args.rates:
            r = await one_rate(d, url, rate, args.seconds)
            results.append(r)
            print(json.dumps(r), flush=True)
            if not (r["sustained"] and r["kept_pace"]):
                break
            while await d.pending():
                await asyncio.sleep(0.1)
        await d.stop()
        await task
        await redis.aclose()
    finally:
        receiver.terminate()
        receiver.wait(10)
        redis_proc.stop()
    sustained = [r["achieved_submit_rate"] for r in results if r["sustained"]]
    at_target = next((r for r in results if r["rate"] == TARGET_RATE), None)
    return {"bench": "delivery", "seconds_per_rate": args.seconds, "steps": results,
            "highest_sustained_per_s": max(sustained) if sustained else 0,
            "p50_s_at_500": at_target and at_target["p50_s"], "p99_s_at_500": at_target and at_target["p99_s"],
            "target": f"p99 < {TARGET_P99}s at {TARGET_RATE}/s, group_wait excluded"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[250, 500, 1000, 2000, 4000])
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    out = asyncio.run(run(args))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "steps"}, indent=2))
    at = out["p99_s_at_500"]
    return 0 if at is not None and at < TARGET_P99 else 1


if __name__ == "__main__":
    sys.exit(main())
