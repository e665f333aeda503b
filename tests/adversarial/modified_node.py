"""Run a party's node with an attack applied: `python -m tests.adversarial.modified_node`.

The process is a real `fedsql node` (same serve(), same TLS identity, same sockets);
only what the attack module patches differs. Started by harness.running().
"""

from __future__ import annotations

import argparse
import importlib
import json
import threading
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("config")
    ap.add_argument("--party", required=True)
    ap.add_argument("--attack", required=True, help="module name under tests.adversarial.attacks")
    ap.add_argument("--params", default="{}", help="JSON object passed to the attack's apply()")
    ap.add_argument("--record", required=True, help="JSON-lines file the attack's observations go to")
    args = ap.parse_args()

    lock = threading.Lock()
    out = Path(args.record)

    def record(obj: Any) -> None:
        line = json.dumps(obj, default=str)
        with lock, out.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    from fedsql.launcher import die_with_launcher

    die_with_launcher()
    module = importlib.import_module(f"tests.adversarial.attacks.{args.attack}")
    module.apply(json.loads(args.params), record)

    from fedsql.config import load_config
    from fedsql.node import serve

    try:
        serve(load_config(args.config), args.party)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
