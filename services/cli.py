"""`vigil`: the command line. One obvious place per command; the work lives in the services.

Commands: up, demo, serve, replay, alerts, report (evaluate is to come; see DESIGN.md).
"""

from __future__ import annotations

import argparse
import sys

SERVICES = ("ingest", "drift", "oversight", "alerts")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vigil", description="Streaming monitoring of ML models in production.")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole stack on this machine until Ctrl-C")
    up.add_argument("--broker", choices=("tansu", "kafka"), default=None,
                    help="embedded broker when VIGIL_KAFKA_BOOTSTRAP is unset (default: VIGIL_EMBEDDED_BROKER)")

    demo = sub.add_parser("demo", help="`up` plus a simulated fleet of model servers")
    demo.add_argument("--duration", type=float, default=90.0, help="seconds of traffic (default 90)")
    demo.add_argument("--speed", type=float, default=None,
                      help="event-time speed-up (default: nine days of event time in --duration)")
    demo.add_argument("--rate", type=float, default=2_000.0, help="predictions per wall-clock second")
    demo.add_argument("--broker", choices=("tansu", "kafka"), default=None)

    serve = sub.add_parser("serve", help="run one service, as a container runs it")
    serve.add_argument("service", choices=SERVICES)

    rp = sub.add_parser("replay", help="send a JSONL/CSV/Parquet file of events to the ingest API")
    rp.add_argument("file")
    rp.add_argument("--kind", choices=("predictions", "labels", "reviews"), default=None,
                    help="kind of every row (default: the file's `kind` column)")
    rp.add_argument("--url", default=None, help="ingest base URL (default: from settings)")
    rp.add_argument("--speed", type=float, default=0.0,
                    help="honour event timestamps at this speed-up (0 = as fast as possible)")
    rp.add_argument("--batch", type=int, default=1_000, help="events per request")
    rp.add_argument("--api-key", default=None)

    from services.alerts_cli import add_parser as add_alerts, add_report_parser
    add_alerts(sub)
    add_report_parser(sub)
    from services.evaluate import add_parser as add_evaluate
    add_evaluate(sub)

    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from services import commands  # heavy imports only when a command runs

    return int(getattr(commands, f"cmd_{args.command}")(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
