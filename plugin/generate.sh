#!/bin/sh
# Regenerates plugin/gen from plugin/proto with buf and the local plugins of buf.gen.yaml.
cd "$(dirname "$0")" && PATH="$(go env GOPATH)/bin:$PATH" buf generate
