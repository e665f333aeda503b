"""Issue #11, finding 3: errors were an un-noised oracle on DP tables. `CASE WHEN id = X AND
minutes > m THEN error('x') ELSE true END` failed or succeeded with one person's value. Now
the outcome is the same for both values of the secret predicate: refused (a function that
can fail), or run noised and charged (arithmetic under TRY, so an overflow cannot raise);
an owner-side failure after the budget is reserved carries no data and stays charged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedsql import errors
from tests.adversarial.dp_federation import SECRET_ID, SECRET_MINUTES, dp_federation, spent
from tests.adversarial.harness import running

pytestmark = pytest.mark.e2e

ERROR_PROBE = ("SELECT COUNT(*) FROM telco.usage WHERE CASE WHEN customer_id = {cid} AND minutes > {m} "
               "THEN error('x') ELSE true END")
OVERFLOW_PROBE = ("SELECT COUNT(*) FROM telco.usage WHERE CASE WHEN customer_id = {cid} AND minutes > {m} "
                  "THEN minutes * 2000000000 ELSE 0 END >= 0")
SETTINGS = "SET fedsql.epsilon = 0.000001"


def _outcome(conn, sql: str):
    """What the issuer observes: the error kind and its text (the probe value masked), or 'rows'."""
    cur = conn.cursor()
    cur.execute(SETTINGS)
    try:
        cur.execute(sql)
        rows = cur.fetchall()
        return ("rows", len(rows))
    except errors.Error as exc:  # which refusing party answers first is a race, not data: drop its name
        text = re.sub(r"^party '\w+': ", "", str(exc))
        return (type(exc).__name__, text.replace(str(SECRET_MINUTES - 1), "M").replace(str(SECRET_MINUTES), "M"))


@pytest.mark.parametrize("attacks", [{}, {"bank": "dp_subquery_skip_checks"}], ids=["user", "modified-issuer"])
def test_error_function_gives_the_same_outcome_for_both_secret_values(tmp_path: Path, attacks) -> None:
    config = dp_federation(tmp_path)
    with running(config, attacks=attacks) as fed:
        with fed.connect("bank") as conn:
            true_case = _outcome(conn, ERROR_PROBE.format(cid=SECRET_ID, m=SECRET_MINUTES - 1))
            false_case = _outcome(conn, ERROR_PROBE.format(cid=SECRET_ID, m=SECRET_MINUTES))
    assert true_case == false_case, (true_case, false_case)
    assert true_case[0] == "PolicyViolation" and "ERROR()" in true_case[1]


def test_overflow_gives_the_same_outcome_and_is_charged(tmp_path: Path) -> None:
    config = dp_federation(tmp_path)
    with running(config) as fed:
        with fed.connect("bank") as conn:
            true_case = _outcome(conn, OVERFLOW_PROBE.format(cid=SECRET_ID, m=SECRET_MINUTES - 1))
            false_case = _outcome(conn, OVERFLOW_PROBE.format(cid=SECRET_ID, m=SECRET_MINUTES))
        assert true_case == false_case == ("rows", 1), (true_case, false_case)
        eps, queries = spent(config)
        assert queries == 2 and eps == pytest.approx(2e-6)


def test_an_owner_side_failure_carries_no_data_and_stays_charged(tmp_path: Path) -> None:
    config = dp_federation(tmp_path)
    secret = "987654321"
    with running(config, attacks={"telco": "dp_error_owner_fails"}, params={"telco": {"secret": secret}}) as fed:
        with fed.connect("bank") as conn:
            cur = conn.cursor()
            with pytest.raises(errors.Error) as info:
                cur.execute("SELECT COUNT(*) FROM telco.usage WHERE minutes > 500")
            assert fed.attack_log("telco") == [{"failed": True}]
            assert secret not in str(info.value) and "Overflow" not in str(info.value)
            assert "privacy budget stays charged" in str(info.value)
            assert secret not in fed.audit_text("bank")
        eps, queries = spent(config)
        assert queries == 1 and eps > 0
