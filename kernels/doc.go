// Package kernels holds the CPU compute kernels: a blocked, packed
// single-precision matrix multiply (Sgemm, SgemmBatched) with AVX-512 and
// AVX2+FMA micro-kernels in Go assembly and a plain-Go fallback, attention
// as one kernel per head built on it (Attention, AttentionGrad: the scores,
// their softmax and the weighted sum, and the backward, while a head's
// matrices are in cache), and the worker pool (ParallelFor) that spreads
// kernels over the cores.
//
// # Sgemm
//
// The product follows the GotoBLAS/BLIS scheme. C is computed in tiles of
// mr×nr elements held in vector registers for the whole sum along k:
//
//   - AVX-512: 14×32, 28 of the 32 zmm registers accumulate (14 rows of two
//     16-float vectors), two hold the B row of the current k step, and one
//     the A value of the current row, broadcast once and read by both FMAs
//     (one load per row instead of two: the FMA-with-broadcast form made
//     the loads, not the FMAs, the limit);
//   - AVX2+FMA: 6×16, 12 of the 16 ymm registers accumulate;
//   - plain Go: 4×16, four rows of accumulators updated together.
//
// Around the tile, three blocks keep the operands in cache:
//
//   - k is cut into blocks of at most kc (384 for AVX-512, 256 otherwise),
//     nearly equal: a 14×kc A panel (21 KiB) stays in L1 while the kernel
//     runs it against every B panel of the block;
//   - n is cut into blocks of at most nc = 4096 columns: the packed kc×nc B
//     block (up to 6 MiB) is read from L2 or L3, one kc×32 panel per kernel
//     call, streamed by the hardware prefetcher. With nc this large the ViT
//     products need a single n block, so A is copied once;
//   - m is walked 14 rows at a time, each A panel copied (when its rows,
//     lda apart, would collide in L1 sets and it meets more than four B
//     panels) or read in place.
//
// These values were measured on an AMD Zen 4 core (32 KiB L1d, 1 MiB L2)
// with the benchmarks of this package; cores with larger caches (Sapphire
// Rapids: 48 KiB, 2 MiB) are served as well. The last rows of a matrix
// use shorter kernels (8, 4, 2, 1 rows) and the last columns masked loads
// and stores, so edges cost no packing of C.
//
// # Bfloat16 products
//
// BF16 (see Precision) computes the same products with A and B rounded to
// bfloat16, round to nearest even, and their products summed in float32
// by VDPBF16PS (AVX512_BF16), two products per float32 lane and
// instruction: twice the float32 peak. The driver is the one above; the
// packing rounds (VCVTNE2PS2BF16) and interleaves the operands into pairs
// of elements consecutive along k, one 32-bit word each. B is rounded once
// per product, as it is packed; A, which the float32 kernels often read in
// place, is always packed: row-major pairs from a plain A, 16 pairs per k
// step from a transposed one. The micro-kernel is 14×32 as for float32,
// over pairs, with blocks of up to 768 elements along k (the A panel is as
// large in bytes as float32's 384). Blocks along k have an even length
// except the last, whose odd element is paired with a zero.
//
// Every sum of a BF16 product is defined bit for bit: each k block sums its
// pairs in order, the high element's product first, each addition rounded
// once to nearest even with denormals read as zeros and tiny results
// flushed (what VDPBF16PS does); then C = float32(alpha*s) +
// float32(beta*C), each product rounded (no fused multiply-add). The
// plain-Go twins compute exactly that, and the tests compare the assembly,
// the twins and a naive loop bit for bit. Where the CPU lacks AVX512_BF16
// (or HYPERAT_NOAVX512BF16=1), BF16 products are FP32's.
//
// # Parallelism and determinism
//
// A product with many rows is a sequence of phases: pack a B block (tasks
// split it), then compute that block's contribution to C (tasks split C
// into chunks of whole 14-row panels, about 16 per thread so that they
// balance; with fewer than 4 panels per thread, into a grid of row panels
// and column ranges, about 4 chunks per thread). A product with few rows
// (under 16 panels per thread) is split by columns instead when that
// balances as well: each task owns a range of at least 2nr columns of C
// over all of k and packs its own part of B, with no phases. A narrow C on
// many threads (3200x128 on 64: 2 column tasks, against 229 chunks of rows)
// takes the phases. Tasks run on a persistent pool of
// goroutines, started once, with the caller taking part; between phases the
// goroutines spin briefly rather than sleep. Small products (2mnk below
// 8 MFLOP on two cores, down to 1 MFLOP on 16 or more) and the matrices of
// a large batch run on one goroutine each.
// K is never split, and the k blocks depend only on k, so every element of
// C is computed by the same sequence of operations whatever GOMAXPROCS is:
// results repeat bit for bit from run to run and across thread counts. No
// call allocates once the pool's buffers have grown to the largest product.
//
// # Dispatch
//
// The variant is chosen once, at start-up, from the features that package
// kernels/cpu reads from CPUID: AVX-512 (AVX512F with the ZMM state enabled
// by the OS), else AVX2+FMA, else plain Go; for BF16, AVX512_BF16 with
// AVX512BW, else FP32's variant. Setting HYPERAT_NOAVX512=1,
// HYPERAT_NOAVX2=1 or HYPERAT_NOAVX512BF16=1 in the environment turns a
// variant off (cpu.Off); the purego build tag leaves the assembly out
// altogether.
// The tests run every variant the CPU supports, and the plain-Go twin of
// every assembly kernel, against a float64 reference.
//
// # Generated code
//
// The assembly (sgemm_amd64.s), its Go declarations (stubs_amd64.go), the
// plain-Go twins of the kernels and packers (twins.go) and the tables of
// kernels per variant (tables_amd64.go) are generated by the avo program in
// ../_asm, which has its own go.mod so that avo stays out of this module
// (it generates the assembly of packages cpu and vmath too).
// Regenerate them with go generate in this directory, which runs
//
//	cd ../_asm && go run . -out ../kernels/sgemm_amd64.s -stubs ../kernels/stubs_amd64.go \
//		-twins ../kernels/twins.go -tables ../kernels/tables_amd64.go -pkg kernels
//
// The result must not differ from the committed files.
package kernels

//go:generate go run -C ../_asm . -out ../kernels/sgemm_amd64.s -stubs ../kernels/stubs_amd64.go -twins ../kernels/twins.go -tables ../kernels/tables_amd64.go -pkg kernels
