"""Issue #11, finding 2: a DP table inside a same-party EXISTS / IN subquery got no noise and no
ledger charge (the D17 path). Played end to end: a user of bank, and a modified bank node
whose planner skips the DP rules; the owner (telco) must refuse, naming the table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedsql import errors
from tests.adversarial.dp_federation import SECRET_ID, SECRET_MINUTES, dp_federation, spent
from tests.adversarial.harness import running

pytestmark = pytest.mark.e2e

# One probe of the recovery: SUM(tenure_months) over 30 subscribers is 30 exactly when some
# usage row has minutes > m; bisecting m gives max(minutes) in ~12 queries, un-noised.
PROBE = ("SELECT SUM(s.tenure_months) FROM telco.subscribers s WHERE EXISTS "
         "(SELECT 1 FROM telco.usage u WHERE u.customer_id = {cid} AND u.minutes > {m})")


def _probe(conn, m: int):
    cur = conn.cursor()
    cur.execute(PROBE.format(cid=SECRET_ID, m=m))
    return cur.fetchall()


@pytest.mark.parametrize("attacks", [{}, {"bank": "dp_subquery_skip_checks"}], ids=["user", "modified-issuer"])
def test_dp_table_in_a_same_party_subquery_is_refused_by_the_owner(tmp_path: Path, attacks) -> None:
    config = dp_federation(tmp_path)
    with running(config, attacks=attacks) as fed:
        with fed.connect("bank") as conn:
            outcomes = []
            for m in (SECRET_MINUTES - 1, SECRET_MINUTES):  # the secret predicate true, then false
                with pytest.raises(errors.PolicyViolation) as info:
                    _probe(conn, m)
                text = re.sub(r"^party '\w+': ", "", str(info.value))  # which party refuses first is a race
                outcomes.append((type(info.value), text.replace(str(m), "M")))
            assert outcomes[0] == outcomes[1]  # the same answer whatever the secret
            assert "telco.usage" in outcomes[0][1] and "differential-privacy" in outcomes[0][1]
            # a covered use of the table still works: noised and charged
            cur = conn.cursor()
            cur.execute("SELECT COUNT(*) FROM telco.usage WHERE minutes > 500")
            assert len(cur.fetchall()) == 1
        eps, queries = spent(config)
        assert queries == 1 and eps > 0
