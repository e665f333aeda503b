"""Generated protobuf modules of the Arrow Flight SQL protocol (Apache-2.0, from apache/arrow).

Regenerate after editing a .proto here:
    python -m grpc_tools.protoc -I connectors/flightsql -I <grpc_tools>/_proto \
        --python_out=connectors/flightsql --pyi_out=connectors/flightsql \
        connectors/flightsql/FlightSql.proto connectors/flightsql/FlightSession.proto
"""
