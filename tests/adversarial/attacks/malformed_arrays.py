"""A compute party whose share traffic is malformed after the plan agreement.

params: how = "trailing" (8 bytes more data than the arrays need; a decoder that trusted the
header would ignore them and the query would succeed), "bool" (one boolean array holding
bytes other than 0/1), "header" (a header far beyond the size limit).
"""

from __future__ import annotations

from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    from executors import transport
    from executors.proto import peer_pb2

    how = params.get("how", "trailing")
    honest_encode = transport.encode_arrays

    def corrupt(arrays) -> bytes:
        msg = peer_pb2.ArrayList()
        msg.ParseFromString(bytes(honest_encode(arrays)))
        if how == "trailing":
            msg.data += b"\0" * 8
        elif how == "bool":  # one boolean array over all the bytes, every byte 7
            size = max(1, len(msg.data))
            msg.header = peer_pb2.ArrayHeader(dtype=[peer_pb2.BOOL], ndim=[1], dim=[size]).SerializeToString()
            msg.data = bytes([7]) * size
        else:
            msg.header = b"\x08\x01" * (3 << 20)
        return msg.SerializeToString()

    def send(self, to, tag, arrays):  # MailboxTransport.send, with the payload corrupted
        payload = corrupt(arrays)
        record({"sent": tag.rsplit(":", 1)[-1], "to": to})
        self.bytes_sent += len(payload)
        self.messages_sent += 1
        self._deliver(to, f"{self._bound()}:{tag}", payload, self.deadline)

    transport.MailboxTransport.send = send
