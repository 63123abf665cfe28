"""``manage.py ddp_publications``: what the project publishes over DDP, and ``--check``."""

import argparse
import json

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter

from ddp import introspection
from ddp.api import API

HELP = """\
List every registered DDP publication (name, parameters, the model and collection each
query feeds, whether it depends on the user, where it is defined), then the collections and
the methods. Publications that take no parameters are run as an anonymous connection to
find their queries; the others are not run. "User" is yes when the class reads self.user
or self.this (a guess from its source), sets login_required, or feeds a collection with a
user_rel.

--check EXPLAINs every query of those publications and exits 1 with one
"PROBLEM: <publication>: <reason>" line on stderr per problem: a collection name that is not
registered, a model no collection publishes, a name registered twice, a query PostgreSQL
cannot plan, a get_queries() that raises. It also says, per publication and collection,
how writers match a saved row against its subscriptions: "multiplexed" (one statement for
all of them, however many), or "one by one" and why (extra(), raw SQL, a parameter type
that cannot be stored); for a publication that takes parameters, what the live registry
holds now. --publication NAME shows one, with its SQL.

--format json prints (version 1: keys are only ever added within a version; lists are
sorted by name):

  {"version": 1,
   "publications": [{"name": str, "params": [str], "static": bool, "user_dependent": bool,
                     "builtin": bool, "defined_at": "module:line",
                     "queries": [{"collection": str|null, "model": "app.Model"|null,
                                  "sql": str|null, "sql_params": [...]}] | null,
                     "error": str|null}],
   "collections": [{"name": str, "model": "app.Model", "fields": [str],
                    "defined_at": "module:line"}],
   "methods": [{"name": str, "params": [str], "defined_at": "module:line"}]}

"queries" is null for a publication that takes parameters or whose get_queries() raised
("error" says what). With --publication, {"version": 1, "publication": {...}}.
"""


class HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the description's layout (the JSON) kept as written."""


class Command(BaseCommand):
    help = HELP

    #: The registry described; tests set another one on an instance.
    registry = API

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # create_parser() passes its own formatter_class, so it cannot be given as an argument.
        parser.formatter_class = HelpFormatter
        return parser

    def add_arguments(self, parser):
        parser.add_argument(
            "--format",
            choices=("table", "json"),
            default="table",
            help="Output format of the listing and of --publication (default: table).",
        )
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--check",
            action="store_true",
            help="EXPLAIN the queries of every publication without parameters; exit 1 on a "
            "problem.",
        )
        action.add_argument(
            "--publication", metavar="NAME", help="Show one publication and its SQL."
        )

    def handle(self, *args, **options):
        # ddp's AppConfig.ready() has already imported every app's ddp.py.
        if options["check"]:
            self.check_registry()
        elif options["publication"]:
            self.show_publication(options["publication"], options["format"])
        elif options["format"] == "json":
            self.write_json(introspection.describe(self.registry))
        else:
            self.stdout.write(introspection.format_table(introspection.describe(self.registry)))

    def show_publication(self, name, output_format):
        if name not in self.registry.publications:
            known = ", ".join(sorted(self.registry.publications))
            raise CommandError(f"Unknown publication {name!r}. Known: {known}", returncode=1)
        publication = introspection.describe_publication(self.registry, name)
        if output_format == "json":
            self.write_json({"version": introspection.JSON_VERSION, "publication": publication})
        else:
            self.stdout.write(introspection.format_publication(publication))

    def write_json(self, document):
        # SQL parameters may be dates, decimals or UUIDs: written as their text.
        self.stdout.write(json.dumps(document, indent=2, default=str))

    def check_registry(self):
        problems, skipped = introspection.check(self.registry)
        if skipped:
            self.stdout.write(f"Not run, as they take parameters: {', '.join(skipped)}")
        lines = introspection.matching_lines(self.registry)
        if lines:
            self.stdout.write("Matching (how writers find the subscriptions a saved row is in):")
            for publication, how in lines:
                self.stdout.write(f"  {publication}: {how}")
        for publication, reason in problems:
            self.stderr.write(f"PROBLEM: {publication}: {reason}")
        if problems:
            count = len(problems)
            raise CommandError(f"{count} problem{'s' if count > 1 else ''} found.", returncode=1)
        self.stdout.write("No problems.")
