// Package pebbleaev1 is the generated protobuf and gRPC code of the
// pebbleae.v1 Replica service (plugin/proto/pebbleae/v1/replica.proto;
// regenerate with plugin/generate.sh). Use package plugin, which wraps it.
package pebbleaev1
