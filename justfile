# Developer tasks. The README's two commands (demo, tests) do not need just.

# the whole pipeline on the fixture ViT and the MNIST subset
demo:
    go run ./cmd/hyperat-demo

# every test (the onnxruntime conformance tests need `just ort` once)
test:
    go test ./...

# what CI runs, on this machine
ci:
    bash .ci/run

# onnxruntime for the conformance tests (npm, without install scripts)
ort:
    cd fixtures/ort && npm ci --ignore-scripts --no-audit --no-fund

# the plain-Go kernels only
test-purego:
    go test -tags purego ./compile/... ./kernels/...

# fuzz each target for a while (default 60 s each)
fuzz seconds="60":
    go test -run='^$' -fuzz='^FuzzImport$' -fuzztime={{seconds}}s ./import
    go test -run='^$' -fuzz='^FuzzRead$' -fuzztime={{seconds}}s ./npy
    go test -run='^$' -fuzz='^FuzzIDX$' -fuzztime={{seconds}}s ./data
    go test -run='^$' -fuzz='^FuzzCIFAR$' -fuzztime={{seconds}}s ./data
    go test -run='^$' -fuzz='^FuzzImage$' -fuzztime={{seconds}}s ./data

# benchmarks: matrix multiply and the engine
bench:
    go test -run='^$' -bench=. -benchtime=3x ./kernels/ ./bench/

# regenerate the ONNX Go types (needs protobuf-compiler, protoc-gen-go, python3-onnx)
# and the assembly of kernels/, kernels/cpu and kernels/vmath (the avo program in _asm/)
generate:
    PATH=/usr/bin:$PATH go generate ./onnx
    go generate ./kernels/...

# regenerate the fixtures with Debian's PyTorch (slow: pretrains the MNIST ViT)
fixtures:
    bash fixtures/gen/make_all.sh
