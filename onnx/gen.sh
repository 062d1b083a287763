#!/usr/bin/env bash
# Regenerates onnx.pb.go from the upstream onnx.proto (proto2).
# Needs Debian's protobuf-compiler and protoc-gen-go; the proto file ships in python3-onnx.
set -euo pipefail
proto=${ONNX_PROTO:-$(python3 -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "onnx.proto"))' 2>/dev/null || echo /usr/lib/python3/dist-packages/onnx/onnx.proto)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$proto" "$tmp/onnx.proto"
cd "$(dirname "$0")"
protoc -I "$tmp" --go_out=. --go_opt=paths=source_relative \
  --go_opt=Monnx.proto=github.com/hyperat/hyperat/onnx "$tmp/onnx.proto"
