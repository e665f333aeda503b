"""Physical plan: the program every participating party runs, step by step.

All parties run the same list of steps in the same order (SPMD); each step
says where it runs. Steps are plain frozen dataclasses so the plan has one
canonical JSON form, whose hash every party compares before it takes part.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


SENTINEL = 1 << 62
"""Fill for NULL partials of MIN/MAX; every encoded value must stay below 2^61."""
VALUE_LIMIT = 1 << 61


@dataclass(frozen=True)
class Encoding:
    """How a plaintext value becomes a ring element (and back).

    kind: int | decimal (scale = decimal digits) | fixed (scale = fraction bits)
          | date (days) | timestamp (microseconds) | bool | string (key only,
          `width` 64-bit words) | float_bits (key only: exact IEEE bits).
    """

    kind: str
    scale: int = 0
    type: str = "BIGINT"  # DuckDB type of the decoded value


@dataclass(frozen=True)
class ShareColumn:
    name: str  # column of the local table
    encoding: Encoding
    role: str = "value"  # value | key


@dataclass(frozen=True)
class LocalQuery:
    """Run SQL over this party's own tables in its DuckDB (plaintext)."""

    id: str
    party: str
    sql: str
    purpose: str = ""
    params: tuple[str, ...] = ()  # hidden-parameter tables it reads: the issuer's node alone holds their
    #                               values, as Arrow tables (planner/passes/hidden_params.py)
    op: str = "local_query"


@dataclass(frozen=True)
class SendPlain:
    """Send a plaintext local table to another party (allowed by policy)."""

    id: str
    source: str
    party: str
    to: str
    purpose: str = ""
    op: str = "send_plain"


@dataclass(frozen=True)
class AgreeWidth:
    """Agree, under MPC, on the widest string key in words (only the max is revealed)."""

    id: str
    sources: tuple[tuple[str, str], ...]  # (party, local step id)
    column: str
    op: str = "agree_width"


@dataclass(frozen=True)
class ShareTable:
    """The owner secret-shares columns of a local table to the compute parties."""

    id: str
    source: str
    party: str
    columns: tuple[ShareColumn, ...]
    width_from: str = ""  # AgreeWidth step giving the string key width
    width: int = 0  # when > 0: a public string key width in words fixed by the plan (no AgreeWidth)
    permute: bool = False  # the owner shares its rows in a random order of its own (SecretTable.order_of)
    op: str = "share_table"


@dataclass(frozen=True)
class SecureUnion:
    id: str
    inputs: tuple[str, ...]
    op: str = "secure_union"


@dataclass(frozen=True)
class Combine:
    column: str
    how: str  # sum | min | max | median (the sum of the two middle values, rows weighted by `weight`)
    #         | quantile (the values at the two ranks around QUANTILE_CONT's position, and its remainder)
    weight: str = ""  # median, quantile: how many rows each row's value stands for (0: NULL or filtered out)
    fraction: tuple[int, int] = (1, 2)  # quantile: the position is (a/b)(n - 1)
    outputs: tuple[str, ...] = ()  # quantile: the columns of the upper value and of the remainder r


@dataclass(frozen=True)
class GroupCombine:
    """Merge partial aggregates: shuffle, open the keys to the compute parties, reduce."""

    id: str
    input: str
    keys: tuple[str, ...]
    combine: tuple[Combine, ...]
    flag: str = ""  # row filter column (0/1): opened with the keys, so only kept rows form groups
    op: str = "group_combine"


GROUP_RANK = "__grank"  # one party's own numbering of its group keys (planner/lower_join.py _group_rank)


@dataclass(frozen=True)
class RevealColumn:
    name: str  # column of the revealed table
    how: str  # key | value | sum_or_null (value, NULL when `count` is 0) | minmax (sentinel → NULL)
    #         | local_key (the issuer's own key: looked up in its fragment by the opened group rank)
    #         | local_row (a column of the issuer's own row, looked up in its fragment by the opened row number)
    source: str  # secret (or opened key) column
    encoding: Encoding
    count: str = ""  # count column for sum_or_null


@dataclass(frozen=True)
class RevealResult:
    """Open the final aggregates to the issuer only."""

    id: str
    input: str
    to: str
    columns: tuple[RevealColumn, ...]
    secret_keys: bool = False  # keys of an oblivious GROUP BY: opened to the issuer only
    local_keys: str = ""  # the issuer's fragment holding `local_key` columns and the `__grank` opened per group
    rows: str = ""  # row-level result: the 0/1 column of real rows; all rows are shuffled and the others
    #                 zeroed before anything is opened (planner/lower_join.py _rows_tail)
    count_to: tuple[str, ...] = ()  # row-level result opened compactly: these two compute parties (the
    #                 issuer and one holding no input, or two such when the issuer does not compute) open
    #                 `rows` of the shuffled table and only the real rows are opened to the issuer — they
    #                 learn how many there are; the third takes no part after the shuffle
    op: str = "reveal_result"


@dataclass(frozen=True)
class NoiseSpec:
    """DP noise for one shared column: each compute party samples its part (executors/dp)."""

    column: str
    family: str  # laplace | skellam
    epsilon: float
    delta: float
    sensitivity: int  # in the column's scaled integer units


@dataclass(frozen=True)
class AddNoise:
    """Each compute party inputs its part of the DP noise as shares; the parts are added
    to the aggregate shares before anything is opened (docs/dp.md)."""

    id: str
    input: str
    noise: tuple[NoiseSpec, ...]
    op: str = "add_noise"


@dataclass(frozen=True)
class DPCharge:
    """What one owner's ledger records for this query before its shares are used."""

    party: str
    table: str  # the owner's table name (unqualified)
    epsilon: float
    delta: float


@dataclass(frozen=True)
class DPOutput:
    """How a DP aggregate reaches the result, for notes and EXPLAIN (planner/passes/dp.py)."""

    key: str  # canonical SQL of the aggregate, e.g. SUM(x)
    func: str  # count | sum | avg
    noise: tuple[NoiseSpec, ...]  # sum part first for avg
    divisor: int  # scaled units per output unit (10^s for DECIMAL, 2^bits for DOUBLE)
    bounds: tuple[str, str] = ("", "")  # clamping range of the argument (output units, as text)


@dataclass(frozen=True)
class DPInfo:
    epsilon: float  # the query's total ε (split across `outputs`)
    delta: float
    family: str
    charges: tuple[DPCharge, ...]
    outputs: tuple[DPOutput, ...]
    columns: tuple[tuple[str, bool, tuple[str, ...]], ...]  # result column, is it one aggregate as is, keys it uses
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # GROUP BY column → declared public values
    selection: "Selection | None" = None  # secret GROUP BY keys: private partition selection


@dataclass(frozen=True)
class Selection:
    """Private partition selection over secret GROUP BY keys (docs/dp.md §5.4)."""

    keys: tuple[str, ...]  # GROUP BY expressions (SQL)
    threshold: int  # τ: a group is released when its noisy count >= τ
    derived: int  # τ derived from (ε, δ, max_rows); threshold = max(derived, declared)
    delta: float  # δ of the selection (P[a group made by one unit is released] <= δ)
    count: NoiseSpec  # the noisy count the threshold applies to
    hidden: bool  # the count is not a result column (extra ε share)


@dataclass(frozen=True)
class FinalQuery:
    """The issuer's DuckDB finishes over what it received: expressions, HAVING, ORDER BY, LIMIT."""

    id: str
    party: str
    sql: str
    inputs: tuple[tuple[str, str], ...]  # (table name in the SQL, step id or '*'+step ids to concatenate)
    op: str = "final_query"


@dataclass(frozen=True)
class ObliviousGroup:
    """Secret GROUP BY: oblivious sort by the keys, segmented scans, shuffle, then open only
    which rows end a (non-empty) group — the number of groups is all the compute parties learn."""

    id: str
    input: str
    keys: tuple[str, ...]
    combine: tuple[Combine, ...]
    flag: str = ""  # row filter column (0/1); groups with no kept row are dropped
    rank: str = ""  # when set: the keys' dense rank (one party's keys), the only sort key; keys ride along
    mark: str = ""  # when set: open nothing; keep every row, `mark` = 1 on each non-empty group's last row
    op: str = "oblivious_group"


@dataclass(frozen=True)
class PartitionSelect:
    """DP partition selection: keep a group only when `mark` = 1 (its last row, from a marking
    ObliviousGroup) and its noisy count is >= `threshold`, decided under MPC. The rows are
    shuffled and only the keep bits are opened: the compute parties learn how many groups are
    released, nothing about the groups below the threshold (docs/dp.md §5)."""

    id: str
    input: str
    count: str  # noisy count column (count units)
    threshold: int
    mark: str
    op: str = "partition_select"


@dataclass(frozen=True)
class BoundPerUnit:
    """DP contribution bounding after a join (docs/dp.md §5.5): sort the joined rows by the DP
    table's privacy unit (a stable oblivious sort), count each unit's kept rows with a segmented
    running sum, and clear `flag` on the rows after the first `bound` kept rows of their unit —
    compared on shares; nothing is opened. Every other column rides along (the rows are reordered)."""

    id: str
    input: str
    unit: str  # the unit's number (1..n, from the DP table's owner), copied onto every joined row
    flag: str  # the 0/1 keep flag: cleared for a unit's rows beyond `bound`
    bound: int
    op: str = "bound_per_unit"


@dataclass(frozen=True)
class DistinctMark:
    """COUNT(DISTINCT x): sort rows by (keys, x) obliviously; `out` is 1 on the first row of
    every distinct (keys, x) — summing it per group counts the distinct values."""

    id: str
    input: str
    keys: tuple[str, ...]
    column: str
    out: str
    valid: str = ""  # 0/1 "x is not NULL": sorted with x, and NULL x rows are never marked
    op: str = "distinct_mark"


@dataclass(frozen=True)
class ValidityPrep:
    """Make `<column>__v` (0/1: not NULL) for a combined column before secure HAVING/ORDER BY."""

    column: str
    how: str  # copy (from `source`) | count (source > 0) | sentinel (MIN/MAX filled with ±2^62)
    source: str = ""


@dataclass(frozen=True)
class SecureFinish:
    """HAVING and ORDER BY … LIMIT over still-secret groups: only the passing count and
    the first `limit` rows (after `offset`) ever get opened."""

    id: str
    input: str
    preps: tuple[ValidityPrep, ...]
    having: object  # SNode | None
    order: tuple  # ((SNode, descending, nulls_first), ...)
    limit: int  # -1: none
    offset: int = 0
    op: str = "secure_finish"


@dataclass(frozen=True)
class AgreeTagKey:
    """The owners of a join's key columns agree a PRF key that no other party learns."""

    id: str
    parties: tuple[str, ...]  # key owners; the first draws the key and sends it to the others
    op: str = "agree_tag_key"


MATCH_TAG_BITS = 128
"""Tags a matcher compares for equality: two full 64-bit words (executors/codec.py keyed_tags)."""
SORT_TAG_BITS = 96
"""Tags the oblivious joins sort: a signed 62-bit high word and a signed 34-bit low field,
which the sort packs with its 2-bit flag and tiebreak (as many comparison words as one
62-bit tag had, up to 2^27 rows). Collisions between distinct keys: about n^2 / 2^97."""
SORT_TAG_LOW_BITS = 34
TAG_WORDS = 2
"""A tag column is shared as two ring words, `<name>#0` (high) and `<name>#1` (low)."""


@dataclass(frozen=True)
class ComputeTags:
    """The owner adds keyed tags PRF_k(join key) to a local table (NULL keys get a random tag)."""

    id: str
    source: str
    party: str
    key_from: str  # AgreeTagKey step
    columns: tuple[str, ...]
    out: str
    bits: int = MATCH_TAG_BITS  # SORT_TAG_BITS for the oblivious joins, which sort tags as signed ring values
    op: str = "compute_tags"


@dataclass(frozen=True)
class SecureJoin:
    """Equi-join of two shared tables on tags opened to one compute party (`matcher`)
    that knows no tag key: it returns the matching row pairs, the parties gather."""

    id: str
    left: str
    right: str
    left_tag: str
    right_tag: str
    matcher: str
    shuffle: bool  # sizes mode: shuffle both sides first, so the matcher sees only a pattern
    reveal_to: tuple[str, ...] = ()  # reveal mode: the key owners also learn the matching rows
    kind: str = "inner"  # inner | left | full (both sides padded) | semi (left rows with a match) | anti | not_in
    mark: bool = False  # semi | anti: every left row stays, in its order; the matcher inputs "kept" as a
    #                     secret 0/1 `__rows` instead of sending row indices, so no other party learns how many
    op: str = "secure_join"


@dataclass(frozen=True)
class ObliviousSemiJoin:
    """IN / EXISTS / NOT EXISTS / NOT IN without a matcher: sort the outer and inner tags
    together (inner rows first within a tag), copy "an inner row has this tag" onto the
    outer rows (segmented scan). Output: every input row, `__rows` = 1 for outer rows that
    (do not) match — only input sizes leak; NOT IN also opens whether the subquery has a NULL."""

    id: str
    outer: str
    inner: str
    outer_tag: str
    inner_tag: str
    kind: str  # semi | anti | not_in
    op: str = "oblivious_semi_join"


@dataclass(frozen=True)
class ObliviousJoin:
    """PK–FK join that reveals nothing but input sizes: sort the union of both sides by
    (tag, PK first), copy each key's PK row onto the FK rows after it (segmented scan).
    Output: every input row, with `__rows` = 1 for FK rows that found their PK row."""

    id: str
    left: str
    right: str
    left_tag: str
    right_tag: str
    pk: str  # "left" or "right": the side whose join key is unique
    outer: bool = False  # LEFT JOIN onto the unique side: every FK row stays, unmatched ones with NULLs
    op: str = "oblivious_join"


@dataclass(frozen=True)
class SecureEval:
    """Evaluate expressions under MPC into new shared columns (see planner/secure_expr.py)."""

    id: str
    input: str
    outputs: tuple[tuple[str, "object"], ...]  # (column, SNode or ("partial", func, SNode|None))
    op: str = "secure_eval"


Step = (LocalQuery | SendPlain | AgreeWidth | ShareTable | SecureUnion | GroupCombine | AddNoise | RevealResult
        | FinalQuery | AgreeTagKey | ComputeTags | SecureJoin | SecureEval | ObliviousGroup | ObliviousJoin
        | ObliviousSemiJoin | SecureFinish | DistinctMark | PartitionSelect | BoundPerUnit)

SECURE_OPS = {"agree_width", "share_table", "secure_union", "group_combine", "add_noise", "reveal_result",
              "secure_join", "secure_eval", "oblivious_group", "oblivious_join", "oblivious_semi_join",
              "secure_finish", "distinct_mark", "partition_select", "bound_per_unit"}


@dataclass(frozen=True)
class PhysicalPlan:
    issuer: str
    compute: tuple[str, str, str]
    schemas: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # public schemas the plan was built on
    steps: tuple[Step, ...]
    result: str  # step id of the issuer's final table
    output: tuple[tuple[str, str], ...]  # result (name, DuckDB type)
    leakage: tuple[str, ...]
    settings: tuple[tuple[str, str], ...] = ()
    fixed_point_bits: int = 20
    dp: DPInfo | None = None  # differential privacy: parameters, ledger charges (covered by the hash)
    # the issuer's account and its roles, whose grants the policy check applied (hashed, so every
    # party checked the same grants; docs/decisions.md D-ROLES); empty: the client certificate alone
    user: str = ""
    roles: tuple[str, ...] = ()
    # SET fedsql.hidden_params = on: where each ? goes (table, first index, count, type) — never a value
    hidden: tuple = ()
    hash: str = field(default="", compare=False)
    # EXPLAIN only: internal column name → the user's expression (`__a0` → `AVG(cost)`). Not part
    # of the plan's meaning, so not hashed: the hash stays what every party already agrees on.
    legend: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def secure(self) -> bool:
        return any(s.op in SECURE_OPS for s in self.steps)

    @property
    def participants(self) -> tuple[str, ...]:
        """Parties that take part: step owners, the compute parties if MPC runs, the issuer."""
        names = {self.issuer}
        for s in self.steps:
            for attr in ("party", "to"):
                if getattr(s, attr, None):
                    names.add(getattr(s, attr))
        if self.secure:
            names.update(self.compute)
        return tuple(sorted(names))

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def to_json(plan: PhysicalPlan) -> dict[str, Any]:
    d = dataclasses.asdict(plan)
    d.pop("hash", None)
    d.pop("legend", None)
    return d


def with_hash(plan: PhysicalPlan) -> PhysicalPlan:
    """Attach the SHA-256 of the plan's canonical JSON."""
    canonical = json.dumps(to_json(plan), sort_keys=True, separators=(",", ":"))
    return dataclasses.replace(plan, hash=hashlib.sha256(canonical.encode()).hexdigest())
