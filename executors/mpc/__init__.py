"""3-party replicated secret sharing over Z_2^64 (ABY3-style, semi-honest, honest majority).

One module per job: prg (AES-CTR randomness), context (per-query state and
rounds), shares, arithmetic, boolean, convert (A2B/B2A), compare, shuffle,
encoding. Every op works on whole columns; a round is one message per peer.
"""

from executors.mpc.arithmetic import (
    add, add_public, constant, cumsum_segments, diff_rows, deal_to_compute, mul, mul_fixed, mul_many, mul_public, neg, receive_dealt,
    receive_revealed, reveal, reveal_many, reveal_to_outsider, share_input, sub, sum_all, sum_segments, trunc, trunc_exact,
    trunc_exact_many, trunc_many, zeros,
)
from executors.mpc.boolean import (
    b_and, b_and_many, b_and_public, b_not, b_or, b_reveal, b_shift_left, b_shift_right, b_xor, b_xor_public,
    bit_not,
)
from executors.mpc.compare import compare_many, eq, ge, gt, le, lt, maximum, minimum, msb, ne
from executors.mpc.context import MPC
from executors.mpc.convert import a2b, b2a_bit, mux, mux_many
from executors.mpc.shares import AShare, BShare, concat, slice_rows, split, take
from executors.mpc.shuffle import shuffle
from executors.mpc.sort import sort_by
from executors.mpc.scan import rows_equal, segment_starts, segmented_scan

__all__ = [
    "MPC", "AShare", "BShare", "concat", "slice_rows", "split", "take",
    "share_input", "deal_to_compute", "receive_dealt", "reveal", "reveal_many", "reveal_to_outsider",
    "receive_revealed", "cumsum_segments", "diff_rows", "zeros", "constant", "add", "sub", "neg", "add_public", "mul_public", "sum_all", "sum_segments", "mul", "mul_many",
    "trunc", "trunc_many", "trunc_exact", "trunc_exact_many", "mul_fixed",
    "b_xor", "b_xor_public", "b_and", "b_and_many", "b_and_public", "b_not", "bit_not", "b_or",
    "b_shift_left", "b_shift_right", "b_reveal",
    "a2b", "b2a_bit", "mux", "mux_many",
    "compare_many", "msb", "lt", "le", "gt", "ge", "eq", "ne", "minimum", "maximum",
    "shuffle", "sort_by", "segment_starts", "segmented_scan", "rows_equal",
]
