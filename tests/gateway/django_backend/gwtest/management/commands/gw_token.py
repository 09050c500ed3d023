import json
import shlex

from django.core.management.base import BaseCommand

from gwtest import support


class Command(BaseCommand):
    help = (
        "Create a user + logged-in Django session + single-use ws_token and print them. "
        "The token only works together with the session cookie printed alongside it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="alice")
        parser.add_argument(
            "--shell", action="store_true",
            help="print WS_TOKEN=..., WS_COOKIE=..., WS_ORIGIN=... lines for `eval`",
        )

    def handle(self, *args, **opts):
        support.ensure_gateway()
        data = support.mint_token(opts["username"])
        if opts["shell"]:
            for key, name in (("ws_token", "WS_TOKEN"), ("cookie", "WS_COOKIE"), ("origin", "WS_ORIGIN")):
                self.stdout.write(f"{name}={shlex.quote(str(data[key]))}")
        else:
            self.stdout.write(json.dumps(data, indent=2))
