"""Flight SQL protocol pieces: the generated protobuf modules (Apache-2.0 .proto files from
apache/arrow) and `metadata` (result schemas, SqlInfo, the federation as a catalog).

Regenerate after editing a .proto here:
    python -m grpc_tools.protoc -I connectors/flightsql -I <grpc_tools>/_proto \
        --python_out=connectors/flightsql --pyi_out=connectors/flightsql \
        connectors/flightsql/FlightSql.proto connectors/flightsql/FlightSession.proto
"""
