import json

from django.core.management.base import BaseCommand

from gwtest import support


class Command(BaseCommand):
    help = "Create/update the ApiGateway row (api_id/stage from env) and print wsedge's config as JSON"

    def add_arguments(self, parser):
        parser.add_argument("--api-id")
        parser.add_argument("--stage")
        parser.add_argument("--backend-base", help="e.g. http://127.0.0.1:8000/ws/")

    def handle(self, *args, **opts):
        gateway = support.ensure_gateway(opts["api_id"], opts["stage"], opts["backend_base"])
        self.stdout.write(json.dumps(support.gateway_config(gateway), indent=2))
