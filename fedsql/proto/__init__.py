"""Generated protobuf/gRPC modules of the node service (node.proto), committed with the .proto.

Regenerate after editing node.proto (grpcio-tools, the `test` extra), then make the gRPC
module's import relative (`from . import node_pb2 as node__pb2`):
    python -m grpc_tools.protoc -I fedsql/proto --python_out=fedsql/proto \
        --pyi_out=fedsql/proto --grpc_python_out=fedsql/proto fedsql/proto/node.proto
"""
