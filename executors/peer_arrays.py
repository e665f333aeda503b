"""The arrays of one peer message, as protobuf (`ArrayList` in executors/proto/peer.proto).

Everything a peer sends is untrusted, so decoding checks every field before it allocates:
the header's size before it is parsed (a tiny message cannot make the parser build millions
of entries), the number of arrays, each dtype against an allow-list (never objects, never
big-endian), the number of dimensions, each dimension, that the data is exactly as long as
the shapes say (no truncation, no trailing bytes) and that booleans are 0 or 1. Any
inconsistency is a `MessageError` that names what is wrong, never a value. Both transports
(gRPC and in-process) use this, so unit tests exercise the same checks as nodes.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError

from executors.proto import peer_pb2
from executors.transport_errors import MessageError

MAX_ARRAYS = 100_000
MAX_NDIM = 4
MAX_DIM = 1 << 40
MAX_HEADER_BYTES = 4 << 20
"""Enough for MAX_ARRAYS arrays of MAX_NDIM large dimensions (about 40 bytes each)."""

_TO_WIRE = {
    "<u8": peer_pb2.UINT64, "<i8": peer_pb2.INT64, "<u4": peer_pb2.UINT32, "<i4": peer_pb2.INT32,
    "<u2": peer_pb2.UINT16, "<i2": peer_pb2.INT16, "|u1": peer_pb2.UINT8, "|i1": peer_pb2.INT8,
    "|b1": peer_pb2.BOOL, "<f8": peer_pb2.FLOAT64,
}
_FROM_WIRE = {code: np.dtype(dt) for dt, code in _TO_WIRE.items()}
ALLOWED_DTYPES = frozenset(_TO_WIRE)


def encode_arrays(arrays: list[np.ndarray]) -> "Payload":
    """Serialise arrays of the allowed dtypes (little-endian, C order) as an ArrayList."""
    if len(arrays) > MAX_ARRAYS:
        raise MessageError(f"cannot send more than {MAX_ARRAYS} arrays in one message")
    header = peer_pb2.ArrayHeader()
    chunks = []
    for arr in arrays:
        a = np.ascontiguousarray(arr)
        code = _TO_WIRE.get(a.dtype.str)
        if code is None:
            raise MessageError(f"cannot send arrays of type {a.dtype.str!r}")
        if a.ndim > MAX_NDIM:
            raise MessageError(f"cannot send arrays with more than {MAX_NDIM} dimensions")
        header.dtype.append(code)
        header.ndim.append(a.ndim)
        header.dim.extend(a.shape)
        if a.size:
            chunks.append(memoryview(a).cast("B"))
    head = header.SerializeToString()
    size = sum(c.nbytes for c in chunks)
    # Exactly ArrayList(header=head, data=b"".join(chunks)).SerializeToString() (tested)
    return Payload([_field_key(1, len(head)) if head else b"", head, _field_key(2, size) if size else b"", *chunks])


class Payload:
    """An encoded ArrayList as its pieces (header and views of the arrays, nothing copied yet):
    the gRPC sender writes them with the envelope in one join (encode_message), so a share
    column is copied once on the way out. `bytes(p)` joins them; a holder that keeps a payload
    beyond the send (a delayed link, a mailbox) must take `bytes(p)`, as the arrays may change."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: list) -> None:
        self.parts = parts
        self.size = sum(len(p) for p in parts)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


def _field_key(number: int, length: int) -> bytes:
    """Protobuf key and length of a length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(length)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_fields(raw: bytes | memoryview, numbers: tuple[int, ...], what: str) -> dict[int, memoryview]:
    """The length-delimited fields of a protobuf message as views into `raw` (nothing copied),
    for the two messages that carry bulk bytes (PeerMessage, ArrayList): each field of `numbers`
    at most once, in increasing order (as every protobuf encoder writes them), wire type 2;
    anything else is a MessageError. Parsing them with protobuf copied every share column twice."""
    if isinstance(raw, Payload):  # an in-process hand-over that was not joined (tests)
        raw = bytes(raw)
    view = memoryview(raw).cast("B") if not isinstance(raw, memoryview) or raw.format != "B" else raw
    out: dict[int, memoryview] = {}
    pos, end, last = 0, len(view), 0
    while pos < end:
        key, pos = _read_varint(view, pos, what)
        number, wire = key >> 3, key & 7
        if wire != 2 or number not in numbers or number <= last:
            raise MessageError(f"peer message {what} is not valid protobuf; are both nodes the same fedsql version?")
        length, pos = _read_varint(view, pos, what)
        if length > end - pos:
            raise MessageError(f"peer message {what} is not valid protobuf; are both nodes the same fedsql version?")
        out[number] = view[pos:pos + length]
        pos += length
        last = number
    return out


def _read_varint(view: memoryview, pos: int, what: str) -> tuple[int, int]:
    value = shift = 0
    while pos < len(view) and shift < 64:
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise MessageError(f"peer message {what} is not valid protobuf; are both nodes the same fedsql version?")


def _parse(message: type, payload: bytes, what: str):
    out = message()
    try:
        out.ParseFromString(payload)
    except (DecodeError, ValueError, RuntimeError):
        raise MessageError(f"peer message {what} is not valid protobuf; are both nodes the same fedsql version?") from None
    return out


def decode_arrays(payload: bytes | memoryview) -> list[np.ndarray]:
    """Inverse of encode_arrays: writable copies (the only copy of the data made on receipt), or
    MessageError on anything inconsistent."""
    fields = length_fields(payload, (1, 2), "")
    head, data = fields.get(1, memoryview(b"")), fields.get(2, memoryview(b""))
    if len(head) > MAX_HEADER_BYTES:
        raise MessageError(f"peer message header has {len(head)} bytes (limit {MAX_HEADER_BYTES})")
    header = _parse(peer_pb2.ArrayHeader, bytes(head), "header")
    count = len(header.dtype)
    if count > MAX_ARRAYS:
        raise MessageError(f"peer message declares {count} arrays (limit {MAX_ARRAYS})")
    if len(header.ndim) != count:
        raise MessageError("peer message header gives dtypes and dimension counts for different numbers of arrays")
    ndims = list(header.ndim)
    if any(n > MAX_NDIM for n in ndims):
        raise MessageError(f"peer message array has more than {MAX_NDIM} dimensions")
    dims = list(header.dim)
    if len(dims) != sum(ndims):
        raise MessageError("peer message header has dimensions that do not match the arrays' dimension counts")
    if any(d > MAX_DIM for d in dims):  # e.g. (0, 2**60): empty, but numpy refuses the shape
        raise MessageError("peer message array has an impossible dimension")
    shapes, sizes, pos = [], [], 0
    for code, ndim in zip(header.dtype, ndims):
        dtype = _FROM_WIRE.get(code)
        if dtype is None:
            raise MessageError(f"peer message has an unsupported array type (code {code})")
        shape = tuple(dims[pos:pos + ndim])
        pos += ndim
        nbytes = dtype.itemsize
        for s in shape:  # Python ints: no overflow; a zero dimension makes it empty
            nbytes *= s
        shapes.append((dtype, shape))
        sizes.append(nbytes)
    if sum(sizes) != len(data):
        raise MessageError(
            f"peer message data has {len(data)} bytes but its arrays need {sum(sizes)} (truncated or trailing bytes)")
    out, offset = [], 0
    view = data
    for (dtype, shape), nbytes in zip(shapes, sizes):
        chunk = view[offset:offset + nbytes]
        if dtype.kind == "b" and nbytes and np.frombuffer(chunk, np.uint8).max() > 1:
            raise MessageError("peer message boolean array holds a value other than 0 or 1")
        out.append(np.frombuffer(chunk, dtype=dtype).reshape(shape).copy())
        offset += nbytes
    return out


def encode_message(query_id: str, sender: str, tag: str, payload: "bytes | Payload") -> bytes:
    """A PeerMessage's wire bytes, written in one join (byte for byte what protobuf writes: tested)."""
    parts = []
    for number, value in ((1, query_id.encode()), (2, sender.encode()), (3, tag.encode()), (4, payload)):
        if len(value):
            parts += [_field_key(number, len(value)), *(value.parts if isinstance(value, Payload) else [value])]
    return b"".join(parts)


def decode_message(raw: bytes) -> tuple[str, str, str, memoryview]:
    """(query_id, sender, tag, payload view) of a PeerMessage's wire bytes; the payload is not copied."""
    fields = length_fields(raw, (1, 2, 3, 4), "envelope")
    try:
        names = [bytes(fields.get(k, b"")).decode("utf-8") for k in (1, 2, 3)]
    except UnicodeDecodeError:
        raise MessageError("peer message envelope has a name that is not UTF-8") from None
    return names[0], names[1], names[2], fields.get(4, memoryview(b""))
