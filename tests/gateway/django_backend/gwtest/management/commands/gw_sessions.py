import json

from django.core.management.base import BaseCommand

from gwtest import support


class Command(BaseCommand):
    help = "Print WebSocketSession rows and the /ws/ request log as JSON"

    def add_arguments(self, parser):
        parser.add_argument("--connection-id")
        parser.add_argument("--events", action="store_true", help="include the request log")

    def handle(self, *args, **opts):
        cid = opts["connection_id"]
        out = {"sessions": support.sessions_snapshot(cid)}
        for row in out["sessions"]:
            ev = support.events_snapshot(row["connection_id"])
            row["disconnect_calls"] = sum(1 for e in ev if e["route"] == "disconnect")
        if opts["events"]:
            out["events"] = support.events_snapshot(cid)
        self.stdout.write(json.dumps(out, indent=2))
