"""The `fedsql` command: node, up, demo, shell, flight, keys, audit, budget, approvals.

Users see one line `error: ...` for anything that goes wrong, never a
traceback (set FEDSQL_DEBUG=1 to get one). Exit codes: 0 ok, 1 a query or
runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from fedsql import __version__, errors
from fedsql.settings import MODES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedsql",
        description="Privacy-preserving federated SQL: query tables held by several parties "
        "without any party seeing another's rows.",
        epilog="Start with `fedsql demo`. Configuration reference: docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"fedsql {__version__}")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")

    p = sub.add_parser(
        "node",
        help="run one party's node (gRPC server) until Ctrl-C/SIGTERM",
        description="Run the node of party NAME as described in CONFIG. Each party runs its own node "
        "next to its data; peers and clients reach it at parties.NAME.address.",
    )
    p.add_argument("config", metavar="CONFIG", help="federation TOML file")
    p.add_argument("--party", "-p", required=True, metavar="NAME", help="which party of CONFIG this node is")

    p = sub.add_parser(
        "up",
        help="start every party of a federation on this machine",
        description="Start one node process per party of CONFIG on this machine, print one line when all "
        "answer, and stop them all on Ctrl-C/SIGTERM (or when any of them dies).",
    )
    p.add_argument("config", metavar="CONFIG", help="federation TOML file")
    p.add_argument("--log-dir", metavar="DIR", help="where each node's log goes (default: .fedsql/logs/ next to CONFIG)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for every node to come up (default 60)")

    p = sub.add_parser(
        "demo",
        help="write demo data, start a local federation, run a tour, open the shell",
        description="Write a synthetic five-party federation (three hospitals, a bank, a telco) into DIR, "
        "start it on free local ports, run a short tour of queries with their results and leakage "
        "reports, then open the shell as party h1. Ctrl-C stops everything.",
    )
    p.add_argument("--dir", default="fedsql-demo", metavar="DIR", help="where to write the demo (default ./fedsql-demo)")
    p.add_argument("--no-shell", action="store_true", help="run the tour and exit (0 when every query behaved)")

    p = sub.add_parser(
        "flight",
        help="serve a party's Arrow Flight SQL endpoint on its own (for BI tools)",
        description="Serve the Arrow Flight SQL endpoint of party NAME at parties.NAME.flight, forwarding "
        "queries to its node. `fedsql node` already starts it when `flight` is configured; use this to run "
        "it as a separate process.",
    )
    p.add_argument("config", metavar="CONFIG", help="federation TOML file")
    p.add_argument("--party", "-p", required=True, metavar="NAME", help="which party's endpoint to serve")
    p = sub.add_parser(
        "user",
        help="manage a party's user accounts (passwords for Flight SQL and the DB-API)",
        description="Add, list, remove user accounts of party NAME or change a password. Accounts are kept "
        "hashed (scrypt) in the party's private state (.fedsql/NAME/users.json); a running node sees "
        "changes at once. The password is asked for (twice) unless --password-stdin reads one line.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, what in (("add", "add a user"), ("list", "list the users"), ("remove", "remove a user"),
                         ("passwd", "change a user's password")):
        a = actions.add_parser(action, help=what, description=f"{what} of party NAME")
        a.add_argument("config", metavar="CONFIG", help="federation TOML file")
        a.add_argument("--party", "-p", required=True, metavar="NAME", help="whose accounts")
        if action != "list":
            a.add_argument("user", metavar="USER", help="the user name")
        if action in ("add", "passwd"):
            a.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of stdin")
    p = sub.add_parser(
        "shell",
        help="SQL shell connected to your party's node",
        description="Open a SQL shell on the node of party NAME (it must be running: `fedsql up CONFIG`). "
        "Statements end with ';'. With -c or -f, run them and exit: 0 when all succeeded, 1 when one failed.",
    )
    p.add_argument("config", metavar="CONFIG", help="federation TOML file")
    p.add_argument("--party", "-p", required=True, metavar="NAME", help="your party (the query issuer)")
    p.add_argument("-c", "--command", metavar="SQL", help="run SQL (one or more ';'-separated statements) and exit")
    p.add_argument("-f", "--file", metavar="FILE", help="run the statements in FILE ('-' for stdin) and exit")
    p.add_argument("--mode", choices=MODES, help="session execution mode (default: the federation's)")
    p.add_argument("--user", "-u", metavar="USER",
                   help="log in as an account of the party (`fedsql user add`); the password is asked for")

    p = sub.add_parser(
        "keys",
        help="create a party's key pair and certificates (mutual TLS identity)",
        description="Create party NAME's node key and self-signed certificate, and a client key and "
        "certificate for its users (defaults under <config dir>/.fedsql/; see docs/security.md). Give "
        ".fedsql/certs/NAME.crt to every other party and pin its printed SHA-256 in the shared config "
        "(parties.NAME.certificate_sha256). Keys never leave the party.",
    )
    p.add_argument("config", metavar="CONFIG", help="federation TOML file")
    p.add_argument("--party", "-p", required=True, metavar="NAME", help="whose keys to create")
    p.add_argument("--force", action="store_true", help="replace existing keys (re-distribute the certificate)")

    p = sub.add_parser(
        "budget",
        help="show a data owner's privacy-budget ledger (DP spends per issuer and table)",
        description="Print, for each issuing party and each DP table of party NAME, the epsilon spent, "
        "the budget and what is left, the delta spent and the number of queries (docs/dp.md). Reads the "
        "ledger at <config dir>/.fedsql/NAME/ledger.sqlite; safe to run next to a live node.",
    )
    p.add_argument("config", metavar="CONFIG", help="federation TOML file")
    p.add_argument("--party", "-p", required=True, metavar="NAME", help="whose ledger (the data owner)")
    p.add_argument("--ledger", metavar="PATH", help="read this ledger file instead of the default")

    p = sub.add_parser(
        "approvals",
        help="list the queries waiting for a data owner's approval, and its templates",
        description="Print the queries held at party NAME for approval (tables with approval = \"manual\" or "
        "\"template\"): query id, issuer, user, time, plan hash, SQL and what it reveals; then the approved "
        "templates. Reads <config dir>/.fedsql/NAME/approvals.sqlite; safe next to a live node.",
    )
    p.add_argument("config", metavar="CONFIG", help="federation TOML file")
    p.add_argument("--party", "-p", required=True, metavar="NAME", help="whose approvals (the data owner)")
    for action, what in (("approve", "approve"), ("reject", "reject")):
        p = sub.add_parser(
            action,
            help=f"{what} a query held for a data owner's approval",
            description=f"{what.capitalize()} query QUERY_ID (or ISSUER/QUERY_ID) held at party NAME; the waiting "
            "issuer hears of it within a second, and the decision, who made it and why go into NAME's audit log."
            + (" With --template, queries of the same shape (other literals) from the same issuer run without "
               "asking from then on." if action == "approve" else
               " With --template ID instead of a query id, revoke that template."),
        )
        p.add_argument("config", metavar="CONFIG", help="federation TOML file")
        p.add_argument("--party", "-p", required=True, metavar="NAME", help="whose approval (the data owner)")
        p.add_argument("query_id", metavar="QUERY_ID", help="the held query (`fedsql approvals` lists them)"
                       + ("" if action == "approve" else ", or a template id with --template"))
        p.add_argument("--reason", metavar="TEXT", help="why (goes into the audit log and to the issuer)")
        p.add_argument("--by", metavar="NAME", help="who decides (default: your login name)")
        p.add_argument("--template", action="store_true",
                       help="also approve the query's shape" if action == "approve" else "revoke template QUERY_ID")
        if action == "approve":
            p.add_argument("--expires", metavar="DURATION", help="the template expires after 3600, 90m, 12h, 7d …")
            p.add_argument("--max-epsilon", type=float, metavar="EPS",
                           help="the template admits DP queries spending at most EPS of this owner's budget")

    p = sub.add_parser(
        "audit",
        help="check a node's hash-chained audit log",
        description="`fedsql audit verify CONFIG --party NAME` (or `fedsql audit verify PATH`) checks the "
        "audit log's hash chain and reports the first broken line. Exit 0 intact, 1 broken.",
    )
    p.add_argument("action", choices=["verify"], help="what to do (verify)")
    p.add_argument("target", metavar="CONFIG|PATH", help="federation TOML file (with --party) or an audit.log path")
    p.add_argument("--party", "-p", metavar="NAME", help="whose audit log (with CONFIG)")
    p.add_argument("--anchor", metavar="SEQ:HASH", action="append", default=[],
                   help="also require entry SEQ to have hash HASH (a hash noted earlier, e.g. from the console); "
                   "repeatable")
    return parser


def _cmd_node(args: argparse.Namespace) -> int:
    from fedsql.config import load_config

    fed = load_config(args.config)
    fed.party(args.party)
    from fedsql.launcher import die_with_launcher

    die_with_launcher()
    try:
        from fedsql.node import serve
    except ImportError as exc:  # pragma: no cover - only while the node is being built
        if exc.name not in ("fedsql.node",):
            raise
        raise errors.OperationalError(f"the node is not available in this installation: {exc}") from None
    address = fed.parties[args.party].address
    from fedsql.launcher import check_ports

    check_ports(fed, [args.party])  # a node already running there: say so (the bind fails too)

    from fedsql.console.registry import console_url

    def ready() -> None:
        flight = fed.parties[args.party].flight
        flight_password = fed.parties[args.party].flight_password
        print(f"fedsql: node of party '{args.party}' (federation '{fed.name}') ready at {address}"
              + (f", Flight SQL at {flight}" if flight else "")
              + (f", Flight SQL with passwords at {flight_password}" if flight_password else "")
              + (f", console at {console_url(fed.parties[args.party])}" if fed.parties[args.party].console else "")
              + "; Ctrl-C stops", flush=True)

    try:
        serve(fed, args.party, on_ready=ready)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _cmd_up(args: argparse.Namespace) -> int:
    from fedsql.launcher import run_up

    return run_up(args.config, log_dir=args.log_dir, timeout=args.timeout)


def _cmd_demo(args: argparse.Namespace) -> int:
    from fedsql.demo import run_demo

    return run_demo(args.dir, shell=not args.no_shell)


def _cmd_shell(args: argparse.Namespace) -> int:
    from fedsql.shell import run_shell

    if args.command is not None and args.file is not None:
        raise errors.InterfaceError("use either -c or -f, not both")
    return run_shell(args.config, args.party, command=args.command, file=args.file, mode=args.mode, user=args.user)


def _cmd_flight(args: argparse.Namespace) -> int:
    from connectors.flight_sql import run_flight

    run_flight(args.config, args.party)
    return EXIT_OK


def _cmd_keys(args: argparse.Namespace) -> int:
    from fedsql import tls
    from fedsql.config import load_config

    fed = load_config(args.config)
    fed.party(args.party)
    created = tls.create_keys(fed, args.party, force=args.force)
    p = tls.paths(fed, args.party)
    print(f"created the identity of party '{args.party}':")
    for f in created:
        print(f"  {f}")
    print(f"give {p.certificate} to every other party; pin it in the shared config:\n"
          f"  [parties.{args.party}]\n  certificate_sha256 = \"{tls.fingerprint(p.certificate.read_bytes())}\"\n"
          f"keep {p.private_key} secret; {p.client_key} and {p.client_certificate} are for your users")
    return EXIT_OK


def _read_password(from_stdin: bool) -> str:
    """One line of stdin, or a getpass prompt asked twice (no echo)."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise errors.InterfaceError("--password-stdin: stdin was empty; pipe the password in, one line")
        return line.rstrip("\r\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise errors.InterfaceError("the two passwords differ; nothing was changed")
    return first


def _cmd_user(args: argparse.Namespace) -> int:
    from fedsql.config import load_config
    from fedsql.users import Accounts, check_name

    accounts = Accounts.of(load_config(args.config), args.party)
    if args.action == "list":
        for name in accounts.names():
            print(name)
        return EXIT_OK
    name = check_name(args.user)
    if args.action == "remove":
        accounts.remove(name)
        print(f"removed user '{name}' of party '{args.party}'")
        return EXIT_OK
    if args.action == "passwd" and not accounts.exists(name):
        raise errors.InterfaceError(f"no user '{name}'; add it with `fedsql user add`")
    if args.action == "add" and accounts.exists(name):
        raise errors.InterfaceError(f"user '{name}' already exists; change the password with `fedsql user passwd`")
    password = _read_password(args.password_stdin)
    (accounts.add if args.action == "add" else accounts.passwd)(name, password)
    print(f"{'added' if args.action == 'add' else 'changed the password of'} user '{name}' of party "
          f"'{args.party}' ({accounts.path})")
    return EXIT_OK


def _cmd_budget(args: argparse.Namespace) -> int:
    from fedsql.budget_cli import run_budget

    return run_budget(args.config, args.party, args.ledger)


def _cmd_approvals(args: argparse.Namespace) -> int:
    from fedsql.approvals_cli import run_list

    return run_list(args.config, args.party)


def _cmd_decide(args: argparse.Namespace) -> int:
    from fedsql import approvals_cli

    if args.cmd == "reject" and args.template:
        return approvals_cli.run_revoke(args.config, args.party, args.query_id)
    return approvals_cli.run_decide(args.config, args.party, args.query_id, args.cmd == "approve",
                                    reason=args.reason, by=args.by, template=args.template,
                                    expires=getattr(args, "expires", None),
                                    max_epsilon=getattr(args, "max_epsilon", None))


def _cmd_audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fedsql.audit import audit_path, verify

    if args.party:
        from fedsql.config import load_config

        fed = load_config(args.target)
        fed.party(args.party)
        path = audit_path(fed, args.party)
    else:
        path = Path(args.target)
        if path.suffix == ".toml":
            raise errors.InterfaceError("with a configuration file, say whose log: --party NAME")
    anchors = [_anchor(a) for a in args.anchor]
    result = verify(path)
    print(result.describe(), file=sys.stdout if result.ok else sys.stderr)
    if not result.ok:
        return EXIT_FAILED
    if anchors:
        from fedsql.audit import read_entries

        entries = read_entries(path)
        for seq, expected in anchors:
            found = entries[seq - 1].get("hash") if seq <= len(entries) else None
            if found != expected:
                print(f"{path}: anchor {seq}:{expected} does not match "
                      + (f"(entry {seq} has hash {found})" if found else f"(the chain has only {len(entries)} entries)")
                      + "; the log was rewritten or is not the one anchored", file=sys.stderr)
                return EXIT_FAILED
        print(f"{path}: {len(anchors)} anchor(s) match", file=sys.stdout)
    return EXIT_OK


def _anchor(text: str) -> tuple[int, str]:
    seq, sep, digest = text.partition(":")
    digest = digest.strip().lower()
    if not sep or not seq.isdigit() or int(seq) < 1 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise errors.InterfaceError(f"--anchor {text!r}: write SEQ:HASH, e.g. 42:<64 hex digits> (the console and "
                                    "`fedsql audit verify` print the last ones)")
    return int(seq), digest


_COMMANDS = {"approvals": _cmd_approvals, "approve": _cmd_decide, "reject": _cmd_decide, "keys": _cmd_keys, "audit": _cmd_audit, "budget": _cmd_budget, "node": _cmd_node, "up": _cmd_up, "demo": _cmd_demo, "shell": _cmd_shell, "flight": _cmd_flight, "user": _cmd_user}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not args.cmd:
        parser.print_help()
        return EXIT_USAGE
    debug = os.environ.get("FEDSQL_DEBUG") == "1"
    try:
        return _COMMANDS[args.cmd](args)
    except errors.Error as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE if isinstance(exc, errors.InterfaceError) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - users get one line, FEDSQL_DEBUG=1 gets the trace
        if debug:
            raise
        print(f"error: internal error ({type(exc).__name__}: {exc}); rerun with FEDSQL_DEBUG=1 for details",
              file=sys.stderr, flush=True)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
