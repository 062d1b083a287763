package graph

import (
	"fmt"
	"strings"
)

// DType is the element type of a value. The IR keeps few types on purpose:
// float32 for everything differentiable, int64 for shapes and indices, bool for masks.
// The importer widens other integer types to int64.
type DType uint8

const (
	Invalid DType = iota
	Float32
	Int64
	Bool
)

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Int64:
		return "int64"
	case Bool:
		return "bool"
	}
	return "invalid"
}

// Tensor is a dense, row-major array. Exactly one of F, I, B holds the data,
// chosen by DType. Tensors are used for constants in the graph and for buffers at run time.
type Tensor struct {
	DType DType
	Shape []int
	F     []float32
	I     []int64
	B     []bool
}

// Numel is the number of elements of a shape (1 for a scalar).
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// NewTensor allocates a zero tensor.
func NewTensor(dt DType, shape []int) *Tensor {
	t := &Tensor{DType: dt, Shape: append([]int{}, shape...)}
	n := Numel(shape)
	switch dt {
	case Float32:
		t.F = make([]float32, n)
	case Int64:
		t.I = make([]int64, n)
	case Bool:
		t.B = make([]bool, n)
	}
	return t
}

// F32 wraps float32 data (not copied).
func F32(shape []int, data []float32) *Tensor {
	return &Tensor{DType: Float32, Shape: append([]int{}, shape...), F: data}
}

// I64 wraps int64 data (not copied).
func I64(shape []int, data []int64) *Tensor {
	return &Tensor{DType: Int64, Shape: append([]int{}, shape...), I: data}
}

// ScalarF32 is a rank-0 float32 tensor.
func ScalarF32(v float32) *Tensor { return F32(nil, []float32{v}) }

// Numel is the tensor's element count.
func (t *Tensor) Numel() int { return Numel(t.Shape) }

// Len is the length of the data slice that DType selects.
func (t *Tensor) Len() int {
	switch t.DType {
	case Float32:
		return len(t.F)
	case Int64:
		return len(t.I)
	case Bool:
		return len(t.B)
	}
	return 0
}

// Clone copies the tensor and its data.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{DType: t.DType, Shape: append([]int{}, t.Shape...)}
	c.F = append([]float32(nil), t.F...)
	c.I = append([]int64(nil), t.I...)
	c.B = append([]bool(nil), t.B...)
	return c
}

// Ints returns integer data as int64 regardless of storage (used for shape-like inputs).
func (t *Tensor) Ints() []int64 {
	switch t.DType {
	case Int64:
		return t.I
	case Float32:
		out := make([]int64, len(t.F))
		for i, v := range t.F {
			out[i] = int64(v)
		}
		return out
	case Bool:
		out := make([]int64, len(t.B))
		for i, v := range t.B {
			if v {
				out[i] = 1
			}
		}
		return out
	}
	return nil
}

func (t *Tensor) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%v", t.DType, t.Shape)
	n := t.Len()
	if n > 8 {
		n = 8
	}
	b.WriteString("{")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(" ")
		}
		switch t.DType {
		case Float32:
			fmt.Fprint(&b, t.F[i])
		case Int64:
			fmt.Fprint(&b, t.I[i])
		case Bool:
			fmt.Fprint(&b, t.B[i])
		}
	}
	if t.Len() > n {
		b.WriteString(" ...")
	}
	b.WriteString("}")
	return b.String()
}
