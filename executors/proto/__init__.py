"""Generated protobuf/gRPC modules of the peer wire (peer.proto), committed with the .proto.

Regenerate after editing peer.proto (grpcio-tools, the `test` extra), then make the gRPC
module's import relative (`from . import peer_pb2 as peer__pb2`):
    python -m grpc_tools.protoc -I executors/proto --python_out=executors/proto \
        --pyi_out=executors/proto --grpc_python_out=executors/proto executors/proto/peer.proto
"""
