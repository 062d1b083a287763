module github.com/hyperat/hyperat

go 1.26

require (
	github.com/spf13/pflag v1.1.0
	google.golang.org/protobuf v1.36.12
)
