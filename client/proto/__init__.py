"""Generated protobuf modules for the client's wire protocol (see serving_wire.proto)."""
