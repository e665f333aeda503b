"""One module per attack: `apply(params, record)` monkeypatches the node before it serves.

`params` is the JSON object the test passed for this party; `record(obj)` appends one
JSON line the test reads back (`Running.attack_log(party)`): what the attacker saw.
"""
